"""fcn-port infer --backend fast|onnxruntime|openvino (issue 18): the backend is checked against
fcn-port at start-up, then writes the same label maps; a peer that is missing or disagrees, or a
GPU asked of a CPU backend, is one line and exit 2 with nothing written."""
import numpy as np
import pytest
from PIL import Image

from fcn_port import cli, models
from fcn_port.models.deploy import backend as backend_mod
from fcn_port.models.deploy import peers
from helpers import ORACLE


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    d = tmp_path_factory.mktemp("backend")
    path, _ = models.convert(str(ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel"),
                             str(d / "model.pt"))
    image = np.random.default_rng(0).integers(0, 256, (45, 61, 3), dtype=np.uint8)
    Image.fromarray(image).save(d / "img.png")
    return path, d / "img.png"


def _labels(folder):
    return np.array(Image.open(folder / "img.png"))


@pytest.mark.parametrize("peer", ["onnxruntime", "openvino"])
def test_a_peer_backend_writes_fcn_ports_labels(peer, ckpt, tmp_path, capsys):
    pytest.importorskip("onnx")
    pytest.importorskip(peer)
    model, image = ckpt
    assert cli.main(["infer", model, str(image), "-o", str(tmp_path / "torch"), "-q"]) == 0
    assert cli.main(["infer", model, str(image), "-o", str(tmp_path / peer),
                     "--backend", peer]) == 0
    out = capsys.readouterr().out
    assert f"backend {peer}: agrees with fcn-port within" in out
    assert np.array_equal(_labels(tmp_path / peer), _labels(tmp_path / "torch"))


def test_the_fast_backend_writes_fcn_ports_labels(ckpt, tmp_path, capsys):
    model, image = ckpt
    assert cli.main(["infer", model, str(image), "-o", str(tmp_path / "torch"), "-q"]) == 0
    assert cli.main(["infer", model, str(image), "-o", str(tmp_path / "fast"),
                     "--backend", "fast"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("backend fast (") and "agrees with fcn-port within" in line
    assert float(line.split("within ")[1].split()[0]) <= 1e-5
    assert np.array_equal(_labels(tmp_path / "fast"), _labels(tmp_path / "torch"))


def test_a_missing_peer_is_one_line_before_the_model_loads(ckpt, tmp_path, capsys,
                                                          monkeypatch):
    monkeypatch.setattr(peers, "installed", lambda peer: False)
    model, image = ckpt
    assert cli.main(["infer", model, str(image), "-o", str(tmp_path / "o"),
                     "--backend", "openvino"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'fcn-port[bench]'" in err
    assert not (tmp_path / "o").exists()


def test_a_peer_that_disagrees_stops_the_run(ckpt, tmp_path, capsys, monkeypatch):
    """Stand-ins for the export and the peer: the run gives fcn-port's output plus 1e-3."""
    import torch

    monkeypatch.setattr(peers, "installed", lambda peer: True)
    monkeypatch.setattr("fcn_port.models.deploy.onnx.export_onnx",
                        lambda model, path, **kw: {"dynamic": True})
    state = {}

    def session(peer, path):
        def run(*xs):
            with torch.inference_mode():
                y = state["model"](*(torch.from_numpy(x) for x in xs))
            return [y.numpy() + 1e-3 * max(1.0, float(y.abs().max()))]
        return run

    real_open = backend_mod.open_backend

    def open_backend(model, peer, **kw):
        state["model"] = model
        return real_open(model, peer, **kw)

    monkeypatch.setattr(peers, "session", session)
    monkeypatch.setattr(backend_mod, "open_backend", open_backend)
    model, image = ckpt
    assert cli.main(["infer", model, str(image), "-o", str(tmp_path / "o"),
                     "--backend", "onnxruntime"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "differs from fcn-port's by 0.001" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("backend", ["fast", "openvino"])
def test_a_cpu_backend_runs_on_the_cpu_only(backend, ckpt, tmp_path, capsys):
    model, image = ckpt
    assert cli.main(["infer", model, str(image), "--device", "cuda", "--backend", backend,
                     "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.count("\n") == 1 and not (tmp_path / "o").exists()
