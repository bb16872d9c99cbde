"""Write update cases (the format of ``shared/oracle/README.md``, "update/") for the solver types
the shared oracle has none of: AdaGrad, RMSProp, AdaDelta and Nesterov, with clipping,
``iter_size``, L1 decay and the ``inv``, ``poly``, ``sigmoid`` and ``exp`` rates among them.
Runs under real Caffe's pycaffe (the reference build of ``shared/oracle/caffe_env.sh``), not
under fcn-port:

    bash ../shared/oracle/caffe_env.sh
    PYTHONPATH=$CAFFE_ROOT/brocolli-caffe-9.0.2/python $CAFFE_ROOT/venv/bin/python \\
        tests/make_update_cases.py tests/data/oracle/update

Each case: a small conv net (Input data and label, Convolution, ReLU, Pooling, InnerProduct,
SoftmaxWithLoss; biases with lr_mult 2 and decay_mult 0) filled by Caffe from ``random_seed``,
``init.caffemodel`` saved before step 0, then ``steps`` calls of ``solver.step(1)`` on fixed
random batches, the param diffs copied at Caffe's ``on_gradients_ready`` callback into
``grads.npz`` and the params after every step into ``trajectory.npz``; Caffe's own snapshots
(every ``snapshot`` steps) in ``snapshots/``.
"""
import json
import os
import sys
import zlib

import numpy as np

import caffe

NET = """name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 9 dim: 9 } } }
layer { name: "label" type: "Input" top: "label" input_param { shape { dim: 2 dim: 1 dim: 1 dim: 1 } } }
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  convolution_param { num_output: 4 kernel_size: 3
    weight_filler { type: "gaussian" std: 0.3 } bias_filler { type: "constant" value: 0.1 } } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
layer { name: "ip1" type: "InnerProduct" bottom: "pool1" top: "ip1"
  param { lr_mult: 1 decay_mult: 1 } param { lr_mult: 2 decay_mult: 0 }
  inner_product_param { num_output: 5
    weight_filler { type: "gaussian" std: 0.2 } bias_filler { type: "constant" value: 0 } } }
layer { name: "loss" type: "SoftmaxWithLoss" bottom: "ip1" bottom: "label" top: "loss" }
"""

CASES = {
    "adagrad_inv": dict(type="AdaGrad", base_lr=0.05, lr_policy="inv", gamma=0.05, power=0.75,
                        weight_decay=0.0005, delta=1e-8),
    "rmsprop_poly_l1": dict(type="RMSProp", base_lr=0.01, lr_policy="poly", power=0.9,
                            max_iter=12, rms_decay=0.9, delta=1e-6, weight_decay=0.001,
                            regularization_type="L1"),
    "adadelta_sigmoid": dict(type="AdaDelta", base_lr=1.0, lr_policy="sigmoid", gamma=-0.3,
                             stepsize=6, momentum=0.95, delta=1e-6, weight_decay=0.0005),
    "nesterov_clip_itersize": dict(type="Nesterov", base_lr=0.05, lr_policy="exp", gamma=0.95,
                                   momentum=0.9, weight_decay=0.0005, clip_gradients=0.5,
                                   iter_size=2),
}
STEPS, SNAPSHOT = 12, 6


def _solver_text(values):
    lines = ['train_net: "train.prototxt"', f"snapshot: {SNAPSHOT}",
             'snapshot_prefix: "snapshots/snap"', "random_seed: 1701", "display: 0"]
    for k, v in values.items():
        lines.append(f'{k}: "{v}"' if k in ("type", "lr_policy") else
                     f"{k}: {v}" if k != "regularization_type" else f'{k}: "{v}"')
    if "max_iter" not in values:
        lines.append(f"max_iter: {STEPS}")
    return "\n".join(lines) + "\n"


def make(out, name, values):
    folder = os.path.join(out, name)
    os.makedirs(os.path.join(folder, "snapshots"), exist_ok=True)
    os.chdir(folder)
    with open("train.prototxt", "w") as f:
        f.write(NET)
    with open("solver.prototxt", "w") as f:
        f.write(_solver_text(values))
    caffe.set_mode_cpu()
    solver = caffe.get_solver("solver.prototxt")
    net = solver.net
    solver.net.save("init.caffemodel")
    rng = np.random.RandomState(zlib.crc32(name.encode()))
    batches, grads, traj = {}, {}, {}

    def record(prefix, k, what):
        for layer, blobs in net.params.items():
            for i, b in enumerate(blobs):
                prefix[f"it/{k}/{layer}/{i}"] = np.array(getattr(b, what), np.float32)

    record(traj, 0, "data")
    state = {"k": 0}
    solver.add_callback(lambda: None, lambda: record(grads, state["k"], "diff"))
    for k in range(STEPS):
        state["k"] = k
        data = rng.normal(0, 1, (2, 3, 9, 9)).astype(np.float32)
        label = rng.randint(0, 5, (2, 1, 1, 1)).astype(np.float32)
        batches[f"it/{k}/data"], batches[f"it/{k}/label"] = data, label
        net.blobs["data"].data[...] = data
        net.blobs["label"].data[...] = label
        solver.step(1)
        record(traj, k + 1, "data")
        traj[f"loss/{k}/loss"] = np.array(net.blobs["loss"].data, np.float32)
    np.savez("batches.npz", **batches)
    np.savez("grads.npz", **grads)
    np.savez("trajectory.npz", **traj)
    meta = {"name": name, "kind": "update", "caffe": "brocolli-caffe 9.0.2 (BVLC caffe 9b89154 "
            "core + SSD layers), CPU, OpenBLAS", "generator": "tests/make_update_cases.py",
            "steps": STEPS, "solver": values, "iter_size": values.get("iter_size", 1),
            "loss_blobs": ["loss"], "snapshot": SNAPSHOT, "snapshot_format": "BINARYPROTO",
            "snapshots": sorted(os.listdir("snapshots")), "feed": "input", "resume": None}
    with open("case.json", "w") as f:
        json.dump(meta, f, indent=1)
    print(name, sorted(os.listdir(".")))


if __name__ == "__main__":
    out = os.path.abspath(sys.argv[1])
    for name, values in CASES.items():
        make(out, name, values)
