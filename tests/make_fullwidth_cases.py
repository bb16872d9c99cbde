"""Write the full-width model-zoo cases (``tests/fullwidth.py``'s nets) with real Caffe, or
their weights with fcn-port.

Under the reference pycaffe (``shared/oracle/caffe_env.sh``):

    PYTHONPATH=$CAFFE_ROOT/brocolli-caffe-9.0.2/python $CAFFE_ROOT/venv/bin/python \\
        tests/make_fullwidth_cases.py tests/data/oracle/fullwidth

writes per net ``net.prototxt``, ``case.json`` and ``blobs.npz`` (the input and the tops of a
few layers, Caffe's forward with the weights of ``fullwidth.weights``). The caffemodels are not
shipped (up to 240 MB each); with fcn-port, no Caffe needed,

    python tests/make_fullwidth_cases.py --weights tests/data/oracle/fullwidth/resnet50

writes the case's ``weights.caffemodel``, after which ``fcn-port parity`` runs it.
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fullwidth  # noqa: E402


def _recorded(layers, shapes, final):
    """The layers whose top no later layer rewrites in place, small enough to ship: the last
    two and three spread over the net."""
    writers = {}
    for k, (name, tops) in enumerate(layers):
        for t in tops:
            writers[t] = k
    done = [k for k, (_, tops) in enumerate(layers) if tops and all(writers[t] == k for t in tops)
            and all(np.prod(shapes[t]) <= 60000 for t in tops)]
    picks = {done[len(done) * q // 4] for q in (1, 2, 3)} | {final - 1, final}
    return sorted(picks)


def caffe_cases(out):
    import caffe

    caffe.set_mode_cpu()
    for name in fullwidth.BUILDERS:
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "net.prototxt"), "w") as f:
            f.write(fullwidth.prototxt(name))
        net = caffe.Net(os.path.join(folder, "net.prototxt"), caffe.TEST)
        for layer, kind in zip(net._layer_names, (l.type for l in net.layers)):
            if layer in net.params:
                blobs = net.params[layer]
                for blob, v in zip(blobs, fullwidth.weights(layer, kind,
                                                            [b.data.shape for b in blobs])):
                    blob.data[...] = v
        shape = net.blobs["data"].data.shape  # an image's values less a mean: compresses
        x = np.random.default_rng(len(name)).integers(0, 256, shape) - 120.0
        net.blobs["data"].data[...] = x.astype(np.float32)
        net.forward()
        layers = [(n, [net._blob_names[i] for i in net._top_ids(k)])
                  for k, n in enumerate(net._layer_names)]
        shapes = {b: net.blobs[b].data.shape for b in net.blobs}
        saved = {"input/data": x.astype(np.float32)}
        for k in _recorded(layers, shapes, len(layers) - 1):
            for i, t in enumerate(layers[k][1]):
                saved[f"top/{layers[k][0]}/{i}"] = net.blobs[t].data.copy()
        np.savez_compressed(os.path.join(folder, "blobs.npz"), **saved)
        meta = {"name": name, "caffe": "brocolli-caffe 9.0.2 (BVLC caffe 9b89154 core + SSD "
                "layers), CPU, OpenBLAS", "generator": "tests/make_fullwidth_cases.py",
                "phase": "TEST", "inputs": ["data"], "backward": False, "losses": {},
                "weights": "tests/fullwidth.py weights(layer, type, shapes), seed 19",
                "weights_note": "not shipped; python tests/make_fullwidth_cases.py "
                                "--weights CASE writes it",
                "layers": [{"name": n, "type": l.type} for n, l in zip(net._layer_names,
                                                                      net.layers)],
                "recorded": sorted(k for k in saved if k.startswith("top/"))}
        with open(os.path.join(folder, "case.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(name, meta["recorded"])


def write_weights(case):
    """``case``'s weights.caffemodel, made by fcn-port from ``fullwidth.weights``."""
    from fcn_port.port.formats.caffemodel import write_weights as write
    from fcn_port.port.formats.text import read_net
    from fcn_port.port.net import CaffeNet

    param, _ = read_net(os.path.join(case, "net.prototxt"))
    net = CaffeNet(param, "TEST")
    params = {lp.name: fullwidth.weights(lp.name, lp.type, [tuple(layer.blob(i).shape)
                                                             for i in range(layer.n_blobs)])
              for lp, layer in zip(net.layer_params, net.layers.values()) if layer.n_blobs}
    write(params, os.path.join(case, "weights.caffemodel"), net=param)
    return os.path.join(case, "weights.caffemodel")


if __name__ == "__main__":
    if sys.argv[1] == "--weights":
        for case in sys.argv[2:]:
            print(write_weights(case))
    else:
        caffe_cases(sys.argv[1])
