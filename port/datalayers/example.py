"""A stock LMDB-fed Caffe example to try ``fcn-port train`` on: Caffe's MNIST LeNet recipe
(``examples/mnist``: two Data layers on LMDBs, scale 1/256, conv 20 / pool / conv 50 / pool /
ip 500 / ReLU / ip 10, SoftmaxWithLoss and a TEST-phase Accuracy, SGD with the ``inv`` rate)
on generated 28 x 28 "digits" (ten fixed random strokes, noise added), so no download is needed.

    python -m fcn_port.port.datalayers.example lenet-lmdb     # writes the folder
    cd lenet-lmdb && fcn-port train --solver lenet_solver.prototxt

The LMDBs hold raw Datums (1 x 28 x 28 uint8, label), keyed ``%08d``, as Caffe's
``convert_mnist_data`` writes them.
"""
import argparse
import os

import numpy as np

NET = """name: "LeNet"
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TRAIN }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "mnist_train_lmdb" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "mnist" type: "Data" top: "data" top: "label" include {{ phase: TEST }}
  transform_param {{ scale: 0.00390625 }}
  data_param {{ source: "mnist_test_lmdb" batch_size: {batch} backend: LMDB }} }}
layer {{ name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
  convolution_param {{ num_output: 20 kernel_size: 5 stride: 1
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "pool1" type: "Pooling" bottom: "conv1" top: "pool1"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "conv2" type: "Convolution" bottom: "pool1" top: "conv2"
  param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
  convolution_param {{ num_output: 50 kernel_size: 5 stride: 1
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "pool2" type: "Pooling" bottom: "conv2" top: "pool2"
  pooling_param {{ pool: MAX kernel_size: 2 stride: 2 }} }}
layer {{ name: "ip1" type: "InnerProduct" bottom: "pool2" top: "ip1"
  param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
  inner_product_param {{ num_output: 500
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "relu1" type: "ReLU" bottom: "ip1" top: "ip1" }}
layer {{ name: "ip2" type: "InnerProduct" bottom: "ip1" top: "ip2"
  param {{ lr_mult: 1 }} param {{ lr_mult: 2 }}
  inner_product_param {{ num_output: 10
    weight_filler {{ type: "xavier" }} bias_filler {{ type: "constant" }} }} }}
layer {{ name: "accuracy" type: "Accuracy" bottom: "ip2" bottom: "label" top: "accuracy"
  include {{ phase: TEST }} }}
layer {{ name: "loss" type: "SoftmaxWithLoss" bottom: "ip2" bottom: "label" top: "loss" }}
"""

SOLVER = """net: "lenet_train_test.prototxt"
test_iter: {test_iter}
test_interval: {test_interval}
base_lr: 0.01
momentum: 0.9
weight_decay: 0.0005
lr_policy: "inv"
gamma: 0.0001
power: 0.75
display: {display}
max_iter: {max_iter}
snapshot: {max_iter}
snapshot_prefix: "snapshots/lenet"
random_seed: 1701
"""


def digits(n, seed):
    """``n`` 28 x 28 uint8 images of ten fixed random stroke patterns with noise, and labels."""
    shapes = np.random.default_rng(1234).random((10, 28, 28)) > 0.8
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n)
    images = shapes[labels] * 200 + rng.integers(0, 56, (n, 28, 28))
    return images.astype(np.uint8), labels


def write_lmdb(folder, images, labels):
    """An LMDB of raw Datums, as ``convert_mnist_data`` writes them."""
    import lmdb

    from ..formats.proto import caffe_pb2

    env = lmdb.open(folder, map_size=64 << 20)
    with env.begin(write=True) as txn:
        for i, (img, label) in enumerate(zip(images, labels)):
            datum = caffe_pb2.Datum(channels=1, height=28, width=28, data=img.tobytes(),
                                    label=int(label))
            txn.put(b"%08d" % i, datum.SerializeToString())
    env.close()


def write_example(out, *, train=640, test=200, batch=64, max_iter=200):
    """Write the example folder ``out`` (must not exist); returns the solver's path."""
    from ..fileio import atomic_output

    os.makedirs(out)
    for name, n, seed in (("mnist_train_lmdb", train, 0), ("mnist_test_lmdb", test, 1)):
        write_lmdb(os.path.join(out, name), *digits(n, seed))
    files = {"lenet_train_test.prototxt": NET.format(batch=batch),
             "lenet_solver.prototxt": SOLVER.format(
                 test_iter=max(1, test // batch), test_interval=max(1, max_iter // 2),
                 display=max(1, max_iter // 10), max_iter=max_iter)}
    for name, text in files.items():
        with atomic_output(os.path.join(out, name), mode="w") as f:
            f.write(text)
    return os.path.join(out, "lenet_solver.prototxt")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", help="the folder to write (must not exist)")
    p.add_argument("--max-iter", type=int, default=200, help="the solver's max_iter")
    args = p.parse_args(argv)
    if os.path.exists(args.out):
        p.error(f"{args.out} exists; give a new folder")
    solver = write_example(args.out, max_iter=args.max_iter)
    print(f"wrote {args.out}: train with  cd {args.out} && fcn-port train --solver "
          f"{os.path.basename(solver)}")


if __name__ == "__main__":
    main()
