"""Write WindowData cases (the data/ format of ``shared/oracle/README.md``) with real Caffe: the
data pycaffe of ``shared/oracle/caffe_data_env.sh`` (OpenCV), not fcn-port:

    bash ../shared/oracle/caffe_env.sh && bash ../shared/oracle/caffe_data_env.sh
    PYTHONPATH=$CAFFE_ROOT-cv/brocolli-caffe-9.0.2/python $CAFFE_ROOT/venv/bin/python \\
        tests/make_window_cases.py tests/data/oracle/data

Each case: three images (PNG and JPEG, colour and grey, different sizes), a window file with
foreground, background and dropped windows, some reaching past the image; Caffe's WindowData
layer seeded by ``caffe.set_random_seed`` for ``passes`` forward passes.
"""
import json
import os
import sys

import numpy as np
from PIL import Image

import caffe

WINDOWS = """# 0
images/a.png
3 30 40
5
1 0.9 2 3 20 25
2 0.7 10 5 39 29
0 0.1 0 0 15 15
3 0.3 5 5 10 10
1 0.55 30 20 39 29
# 1
images/b.jpg
3 26 22
3
2 0.8 0 0 21 25
0 0.2 4 6 12 20
0 0.05 15 1 21 9
# 2
images/c.png
3 17 33
2
3 0.95 8 2 30 14
0 0.4 1 1 31 15
"""
CASES = {
    "windowdata_context_mirror_seeded": dict(
        phase="TRAIN", seed=1701, passes=3,
        layer='transform_param { mirror: true crop_size: 12 mean_value: 104 mean_value: 117 '
              'mean_value: 123 }\n  window_data_param { source: "windows.txt" batch_size: 4 '
              'fg_fraction: 0.5 context_pad: 2 scale: 0.1 }'),
    "windowdata_square_meanfile": dict(
        phase="TEST", seed=7, passes=2,
        layer='transform_param { crop_size: 10 mean_file: "mean.binaryproto" }\n  '
              'window_data_param { source: "windows.txt" batch_size: 3 crop_mode: "square" '
              'context_pad: 1 fg_threshold: 0.6 bg_threshold: 0.35 }'),
}


def images(folder, rng):
    os.makedirs(os.path.join(folder, "images"), exist_ok=True)
    a = np.cumsum(rng.integers(0, 20, (30, 40, 3)), 1).astype(np.uint8)
    Image.fromarray(a).save(os.path.join(folder, "images/a.png"))
    b = (rng.integers(0, 256, (26, 22, 3)) // 2 + 60).astype(np.uint8)
    Image.fromarray(b).save(os.path.join(folder, "images/b.jpg"), quality=90)
    c = np.cumsum(rng.integers(0, 30, (17, 33)), 0).astype(np.uint8)
    Image.fromarray(c).save(os.path.join(folder, "images/c.png"))  # grey: imread COLOR copies


def main(out):
    for name, spec in CASES.items():
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        rng = np.random.default_rng(len(name))
        images(folder, rng)
        with open(os.path.join(folder, "windows.txt"), "w") as f:
            f.write(WINDOWS)
        mean = caffe.proto.caffe_pb2.BlobProto()
        mean.shape.dim.extend([1, 3, 14, 14])
        mean.data.extend(rng.uniform(50, 150, 3 * 14 * 14).astype(np.float32).tolist())
        with open(os.path.join(folder, "mean.binaryproto"), "wb") as f:
            f.write(mean.SerializeToString())
        net_text = ('layer {\n  name: "data"\n  type: "WindowData"\n  top: "data"\n  '
                    f'top: "label"\n  {spec["layer"]}\n}}\n')
        with open(os.path.join(folder, "net.prototxt"), "w") as f:
            f.write(net_text)
        here = os.getcwd()
        os.chdir(folder)
        try:
            caffe.set_mode_cpu()
            caffe.set_random_seed(spec["seed"])
            net = caffe.Net("net.prototxt", caffe.TRAIN if spec["phase"] == "TRAIN" else caffe.TEST)
            blobs = {}
            for p in range(spec["passes"]):
                net.forward()
                prefix = "top" if p == 0 else f"pass{p + 1}/top"
                blobs[f"{prefix}/data/0"] = net.blobs["data"].data.copy()
                blobs[f"{prefix}/data/1"] = net.blobs["label"].data.copy()
            del net
        finally:
            os.chdir(here)
        np.savez(os.path.join(folder, "blobs.npz"), **blobs)
        meta = {"name": name, "kind": "data", "caffe": "brocolli-caffe 9.0.2 (BVLC caffe 9b89154 "
                "core + SSD layers), CPU, OpenBLAS; built with USE_OPENCV (OpenCV 4.6) and "
                "USE_LMDB", "generator": "tests/make_window_cases.py", "phase": spec["phase"],
                "passes": spec["passes"], "random_seed": spec["seed"], "inputs": [],
                "backward": False, "losses": {}, "weighted_losses": {},
                "outputs": ["data", "label"],
                "recorded": "top/<layer>/<i> after forward pass 1, pass<p>/top/<layer>/<i> "
                            "after pass p",
                "layers": [{"name": "data", "type": "WindowData", "bottoms": [],
                            "tops": ["data", "label"]}]}
        with open(os.path.join(folder, "case.json"), "w") as f:
            json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
