"""`fcn-port convert`, `net`, `models` and `parity --model` as a user runs them."""
import json
import subprocess
import sys

import numpy as np
import torch

from fcn_port import models
from fcn_port.cli import main
from fcn_port.port import DEFAULT_WEIGHTS
from fcn_port.port.net import CaffeNet
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text, read_net, read_solver
from helpers import ORACLE


def fcn_port(*args):
    return subprocess.run([sys.executable, "-m", "fcn_port.cli", *map(str, args)],
                          capture_output=True, text=True)


def test_convert_bundled_model_matches_the_interpreter(tmp_path, capsys):
    out = tmp_path / "tiny.pt"
    assert main(["convert", str(DEFAULT_WEIGHTS), "-o", str(out)]) == 0
    assert "voc-fcn8s" in capsys.readouterr().out
    net = models.load(out)
    interp = CaffeNet(read_net(DEFAULT_WEIGHTS.with_suffix(".prototxt"))[0])
    interp.load_caffemodel(DEFAULT_WEIGHTS, strict=True)
    x = torch.rand(1, 3, 45, 31) * 255 - 120
    with torch.no_grad():
        assert torch.allclose(net(x), interp(data=x)["score"], atol=1e-5, rtol=0)


def test_convert_default_output_and_json(tmp_path):
    src = tmp_path / "voc-fcn8s.caffemodel.h5"
    src.write_bytes((ORACLE / "fcn/voc-fcn8s/weights.caffemodel.h5").read_bytes())
    run = fcn_port("convert", src, "--json")
    assert run.returncode == 0, run.stderr
    meta = json.loads(run.stdout)
    assert meta["output"] == str(tmp_path / "voc-fcn8s.pt") and meta["model"] == "voc-fcn8s"


def test_convert_bad_input_one_line_no_output(tmp_path):
    out = tmp_path / "x.pt"
    run = fcn_port("convert", ORACLE / "fcn/voc-fcn16s/weights.caffemodel", "--model",
                   "voc-fcn8s", "-o", out)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "missing blob upscore8.0" in run.stderr and "Traceback" not in run.stderr
    junk = tmp_path / "junk.caffemodel"
    junk.write_bytes(b"\x0a\xff\xff\xff\x0fnot protobuf")
    run = fcn_port("convert", junk, "-o", out)
    assert run.returncode == 2 and "junk.caffemodel" in run.stderr and "Traceback" not in run.stderr
    assert not out.exists()


def test_net_writes_official_prototxts_that_run(tmp_path):
    run = fcn_port("net", "voc-fcn8s", "-o", tmp_path / "n")
    assert run.returncode == 0, run.stderr
    names = sorted(p.name for p in (tmp_path / "n").iterdir())
    assert names == ["deploy.prototxt", "solver.prototxt", "train.prototxt", "val.prototxt"]
    train, _ = read_net(tmp_path / "n/train.prototxt")
    data = train.layer[0]
    # the official train.prototxt's data layer, as typed from FCN_FACTS / the official file
    assert (data.type, data.python_param.module, data.python_param.layer) == \
        ("Python", "voc_layers", "SBDDSegDataLayer")
    assert data.python_param.param_str == ("{'sbdd_dir': '../data/sbdd/dataset', 'seed': 1337, "
                                           "'split': 'train', 'mean': (104.00699, 116.66877, "
                                           "122.67892)}")
    loss = train.layer[-1]
    assert (loss.loss_param.normalize, loss.loss_param.ignore_label) == (False, 255)
    solver, _ = read_solver(tmp_path / "n/solver.prototxt")
    assert (solver.base_lr, solver.momentum, solver.iter_size, solver.max_iter,
            solver.weight_decay, solver.test_iter[0], solver.lr_policy) == \
        (np.float32(1e-14), np.float32(0.99), 1, 100000, np.float32(0.0005), 736, "fixed")
    # the train net runs in the interpreter, its Python data layer's tops fed as inputs
    net = CaffeNet(train, "TRAIN", input_shapes={"data": (1, 3, 64, 64), "label": (1, 1, 64, 64)})
    assert net.inputs == ["data", "label"]
    deploy = CaffeNet(read_net(tmp_path / "n/deploy.prototxt")[0])
    assert deploy.blob_shapes["score"] == (1, 21, 500, 500)


def test_net_single_file_to_stdout_and_alexnet_solver():
    run = fcn_port("net", "voc-fcn-alexnet", "--solver")
    assert run.returncode == 0 and "base_lr: 0.0001" in run.stdout and "iter_size: 20" in run.stdout
    run = fcn_port("net", "siftflow-fcn16s", "--split", "val")  # SIFT Flow's val is "test"
    net, _ = parse_text(run.stdout, caffe_pb2.NetParameter)
    assert "'split': 'test'" in net.layer[0].python_param.param_str
    assert net.layer[-1].name == "loss_geo"
    run = fcn_port("net", "voc-fcn8s", "--split", "deploy", "--classes", "5")
    assert run.returncode == 0 and "num_output: 5" in run.stdout and "num_output: 21" not in run.stdout


def test_net_solver_to_a_folder_brings_the_nets_it_names(tmp_path):
    """-o DIR with --solver writes what the solver refers to (train_net and test_net), so
    ``train --eval-every`` finds its val net; -o X.prototxt is one file, not a folder."""
    for extra, stem in (([], "s"), (["--split", "train"], "t")):
        run = fcn_port("net", "siftflow-fcn32s", "--solver", *extra, "-o", tmp_path / stem)
        assert run.returncode == 0, run.stderr
        names = sorted(p.name for p in (tmp_path / stem).iterdir())
        assert names == ["solver.prototxt", "test.prototxt", "trainval.prototxt"], names
        solver, _ = read_solver(tmp_path / stem / "solver.prototxt")
        assert (solver.train_net, list(solver.test_net)) == ("trainval.prototxt",
                                                              ["test.prototxt"])
    run = fcn_port("net", "voc-fcn32s", "--split", "val", "-o", tmp_path / "v.prototxt")
    assert run.returncode == 0 and (tmp_path / "v.prototxt").is_file()
    assert read_net(tmp_path / "v.prototxt")[0].layer[0].python_param.layer == "VOCSegDataLayer"
    for argv in (["--split", "val", "-o", tmp_path / "nodir" / "x.prototxt"],
                 ["--split", "val", "--solver", "-o", tmp_path / "y.prototxt"]):
        run = fcn_port("net", "voc-fcn32s", *argv)
        assert run.returncode == 2 and run.stderr.count("\n") == 1, run.stderr
    assert not (tmp_path / "nodir").exists() and not (tmp_path / "y.prototxt").exists()


def test_models_list_and_parity_model_cli():
    run = fcn_port("models", "--json")
    listed = {m["model"]: m for m in json.loads(run.stdout)}
    assert len(listed) == 15 and listed["nyud-fcn32s-color-hha"]["inputs"] == ["color", "hha"]
    run = fcn_port("parity", "--model", "voc-fcn8s", "--json", ORACLE / "fcn/voc-fcn8s")
    r = json.loads(run.stdout)
    assert run.returncode == 0 and r["pass"] and r["compared"] > 80
    run = fcn_port("parity", "--model", "voc-fcn32s", ORACLE / "fcn/voc-fcn8s")
    assert run.returncode == 1 and "does not fit voc-fcn32s" in run.stdout
    run = fcn_port("parity", "--model", "auto", "--json", ORACLE / "solver/lr_inv")
    assert run.returncode == 0 and json.loads(run.stdout)["pass"] is None, run.stderr


def test_parity_model_from_checkpoint(tmp_path):
    case = ORACLE / "fcn/voc-fcn8s-atonce"
    models.convert(str(case / "weights.caffemodel"), str(tmp_path / "a.pt"))
    run = fcn_port("parity", "--model", tmp_path / "a.pt", "--json", case)
    r = json.loads(run.stdout)
    assert r["pass"] and r["compared"] > 40, r
    assert np.isfinite(r["worst"])


def test_a_checkpoint_verb_reports_a_load_error_as_itself(tmp_path, capsys):
    # a caffemodel of no FCN: load raises ConvertError, which infer passes on as one line
    image = tmp_path / "a.png"
    from PIL import Image
    Image.new("RGB", (8, 6)).save(image)
    rc = main(["infer", str(ORACLE / "layers/crop/weights.caffemodel"), str(image),
               "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "no FCN layers" in err
    assert not (tmp_path / "out").exists()
