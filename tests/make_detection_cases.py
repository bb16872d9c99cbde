"""Write DetectionOutput cases (the forward format of ``shared/oracle/README.md``) with real
Caffe: the reference pycaffe of ``shared/oracle/caffe_env.sh`` (its SSD layers), not fcn-port:

    bash ../shared/oracle/caffe_env.sh
    PYTHONPATH=$CAFFE_ROOT/brocolli-caffe-9.0.2/python $CAFFE_ROOT/venv/bin/python \\
        tests/make_detection_cases.py tests/data/oracle/zoo

Each case: priors from a PriorBox over a 5 x 4 feature map, random location offsets and class
probabilities (some near-duplicate boxes so NMS removes some, equal scores across classes),
and DetectionOutput with the options named in CASES; the top is N detections x 7.
"""
import json
import os
import sys

import numpy as np

import caffe

PRIOR = ('layer { name: "prior" type: "PriorBox" bottom: "fmap" bottom: "image" top: "prior" '
         'prior_box_param { min_size: 20 max_size: 40 aspect_ratio: 2 flip: true clip: %s '
         'variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 } }\n')
CASES = {  # name: (loc classes, classes, DetectionOutput parameters, clip priors)
    "detection_center_size_keep_top_k": (1, 4, "code_type: CENTER_SIZE keep_top_k: 12 "
                                         "confidence_threshold: 0.05 nms_param { "
                                         "nms_threshold: 0.45 top_k: 30 }", "true"),
    "detection_corner_per_class_eta": (3, 3, "share_location: false code_type: CORNER "
                                       "background_label_id: 1 nms_param { nms_threshold: 0.6 "
                                       "eta: 0.9 } confidence_threshold: 0.2", "false"),
    "detection_corner_size_none_kept": (1, 3, "code_type: CORNER_SIZE confidence_threshold: 0.99999 "
                                        "nms_param { nms_threshold: 0.5 }", "true"),
}


def main(out):
    for name, (loc_classes, classes, param, clip) in CASES.items():
        folder = os.path.join(out, name)
        os.makedirs(folder, exist_ok=True)
        priors = 5 * 4 * 4
        text = (f'name: "{name}"\n'
                'layer { name: "fmap" type: "Input" top: "fmap" input_param { shape { dim: 2 '
                'dim: 1 dim: 5 dim: 4 } } }\n'
                'layer { name: "image" type: "Input" top: "image" input_param { shape { dim: 2 '
                'dim: 3 dim: 100 dim: 80 } } }\n'
                f'layer {{ name: "loc" type: "Input" top: "loc" input_param {{ shape {{ dim: 2 '
                f'dim: {priors * loc_classes * 4} }} }} }}\n'
                f'layer {{ name: "conf" type: "Input" top: "conf" input_param {{ shape {{ dim: 2 '
                f'dim: {priors * classes} }} }} }}\n'
                + PRIOR % clip +
                f'layer {{ name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" '
                f'bottom: "prior" top: "det" detection_output_param {{ num_classes: {classes} '
                f'{param} }} }}\n')
        with open(os.path.join(folder, "net.prototxt"), "w") as f:
            f.write(text)
        rng = np.random.default_rng(len(name))
        loc = rng.normal(0, 0.5, (2, priors * loc_classes, 4)).astype(np.float32)
        loc[:, 1::7] = loc[:, 0::7][:, :loc[:, 1::7].shape[1]]  # repeated offsets: overlaps
        logits = rng.normal(0, 2, (2, priors, classes)).astype(np.float32)
        logits[:, 3] = logits[:, 5]                                 # equal scores
        conf = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        feed = {"fmap": np.zeros((2, 1, 5, 4), np.float32),
                "image": np.zeros((2, 3, 100, 80), np.float32),
                "loc": loc.reshape(2, -1), "conf": conf.reshape(2, -1).astype(np.float32)}
        caffe.set_mode_cpu()
        net = caffe.Net(os.path.join(folder, "net.prototxt"), caffe.TEST)
        for k, v in feed.items():
            net.blobs[k].data[...] = v
        net.forward()
        net.save(os.path.join(folder, "weights.caffemodel"))
        blobs = {f"input/{k}": v for k, v in feed.items()}
        blobs["top/prior/0"] = net.blobs["prior"].data.copy()
        blobs["top/det/0"] = net.blobs["det"].data.copy()
        np.savez(os.path.join(folder, "blobs.npz"), **blobs)
        meta = {"name": name, "caffe": "brocolli-caffe 9.0.2 (BVLC caffe 9b89154 core + SSD "
                "layers), CPU, OpenBLAS", "generator": "tests/make_detection_cases.py",
                "phase": "TEST", "inputs": list(feed), "backward": False, "losses": {},
                "layers": [{"name": n, "type": layer.type}
                           for n, layer in zip(net._layer_names, net.layers)],
                "detections": int(blobs["top/det/0"].shape[2])}
        with open(os.path.join(folder, "case.json"), "w") as f:
            json.dump(meta, f, indent=1)
        print(name, blobs["top/det/0"].shape)


if __name__ == "__main__":
    main(sys.argv[1])
