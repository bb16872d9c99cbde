"""Data layers bound to sources (solvers/data.py): npz batches, callables, iterables, per-process
sharding, registered readers for Python data layers, and the errors."""
import numpy as np
import pytest

from fcn_port.port.errors import CaffeFormatError, UserInputError
from fcn_port.port.formats.proto import caffe_pb2
from fcn_port.port.formats.text import parse_text
from fcn_port.port.net import filter_layers
from fcn_port.solvers import data
from fcn_port.solvers.data import DataWarning, Feeder, NpzBatches, source_layers

NET = """
layer { name: "data" type: "Python" top: "data" top: "label"
        python_param { module: "voc_layers" layer: "SBDDSegDataLayer" param_str: "{}" } }
layer { name: "extra" type: "Input" top: "extra" input_param { shape { dim: 1 } } }
layer { name: "fn" type: "Python" bottom: "data" top: "out" }
"""


def _layers(bound=()):
    net, _ = parse_text(NET, caffe_pb2.NetParameter)
    return source_layers(filter_layers(net, "TRAIN"), bound)


def _batch(k):
    return {"data": np.full((1, 3, 2, 2), k, np.float32), "label": np.full((1, 1, 2, 2), k),
            "extra": np.array([k], np.float32)}


def test_source_layers_are_inputs_and_unbound_bottomless_python_layers():
    assert [name for name, *_ in _layers()] == ["data", "extra"]
    assert [name for name, *_ in _layers(bound={"data"})] == ["extra"]


def test_npz_batches_index_by_pass_iteration_and_rank_and_cycle(tmp_path):
    np.savez(tmp_path / "b.npz", **{f"it/{k}/{b}": v for k in range(5) for b, v in _batch(k).items()})
    src = NpzBatches(tmp_path / "b.npz")
    assert len(src) == 5 and src.blobs == ["data", "extra", "label"]
    feed = Feeder(_layers(), src, iter_size=2, rank=1, world=2)  # one source, one draw per pass
    assert feed.shapes() == {"data": (1, 3, 2, 2), "label": (1, 1, 2, 2), "extra": (1,)}
    got = feed(it=0, p=1)  # draw (0 * 2 + 1) * 2 + 1 = 3
    assert float(got["data"][0, 0, 0, 0]) == 3 and float(got["extra"][0]) == 3
    assert str(got["label"].dtype) == "torch.float32"  # Caffe blobs are float
    with pytest.warns(DataWarning, match="cycles back to batch 0"):
        assert float(feed(it=1, p=0)["label"].max()) == 0  # draw 5 -> batch 0


def test_callables_iterables_and_names_bind_per_layer():
    calls = []

    def fn():
        calls.append(1)
        return {"extra": np.array([len(calls)], np.float32)}

    items = iter([_batch(k) for k in range(6)])
    feed = Feeder(_layers(), {"data": items, "extra": fn}, rank=1, world=2)
    assert len(calls) == 1  # the peek is kept as the first draw
    first, second = feed(0), feed(1)
    assert float(first["extra"][0]) == 1 and float(second["extra"][0]) == 2
    # process 1 of 2 takes items 1, 3, 5 of an iterable
    assert float(first["data"].max()) == 1 and float(second["data"].max()) == 3
    feed(2)
    with pytest.raises(UserInputError, match="ran out of batches"):
        feed(3)


def test_registered_readers_serve_python_data_layers(monkeypatch):
    seen = []

    def reader(lp, phase, root):
        seen.append((lp.python_param.module, phase, root))
        return (lambda: _batch(7)) if lp.python_param.module == "voc_layers" else None

    monkeypatch.setattr(data, "_FACTORIES", [])
    data.register_source_factory(reader)
    feed = Feeder(_layers(), {"extra": lambda: _batch(1)}, phase="TEST", root="/x")
    assert seen == [("voc_layers", "TEST", "/x")] and float(feed(0)["data"].max()) == 7


def test_the_source_a_user_gives_wins_over_readers_and_is_named(monkeypatch, tmp_path):
    """``--batches`` (the default source) feeds every data layer not bound by name, even one a
    registered reader recognises; each layer's feed is described (train logs it)."""
    monkeypatch.setattr(data, "_FACTORIES", [])
    data.register_source_factory(lambda lp, phase, root: lambda: _batch(7))
    np.savez(tmp_path / "b.npz", **{f"it/0/{b}": v for b, v in _batch(3).items()})
    feed = Feeder(_layers(), NpzBatches(tmp_path / "b.npz"))
    assert float(feed(0)["data"].max()) == 3
    assert len(feed.feeds) == 2 and all("b.npz" in line for line in feed.feeds)
    assert feed.feeds[0].startswith("data layer 'data' (Python voc_layers.SBDDSegDataLayer")
    # a layer bound by name wins over the default; the reader serves only what is left
    feed = Feeder(_layers(), {"extra": lambda: _batch(1)})
    assert float(feed(0)["data"].max()) == 7 and "registered reader" in feed.feeds[0]
    assert "bound by name" in feed.feeds[1]


def test_missing_sources_and_blobs_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match=r"data layer 'data' \(Python voc_layers\."):
        Feeder(_layers(), None)
    with pytest.raises(UserInputError, match="no data layer named 'nope'"):
        Feeder(_layers(), {"nope": lambda: {}})
    with pytest.raises(UserInputError, match="no blob 'label'"):
        Feeder(_layers(), lambda: {"data": np.zeros(1), "extra": np.zeros(1)})
    np.savez(tmp_path / "odd.npz", **{"it/0/a": np.zeros(1), "it/1/b": np.zeros(1)})
    with pytest.raises(CaffeFormatError, match="it/1"):
        NpzBatches(tmp_path / "odd.npz")


def _member(path, header_shape, payload, dtype="<f4", compress=True):
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, {"descr": dtype, "fortran_order": False,
                                                   "shape": header_shape})
        z.writestr("it/0/data.npy", buf.getvalue() + payload)
    return path


def test_npz_batches_are_checked_from_their_headers_before_inflating(tmp_path, monkeypatch):
    """Issue 16: an object array (it needs a pickle), a deflated member whose header declares
    other than it inflates to, and a batch that would not fit in memory are refused before any
    array is inflated."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "obj.npz", "w") as z:
        import io

        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        z.writestr("it/0/data.npy", buf.getvalue())
    with pytest.raises(CaffeFormatError, match="object"):
        NpzBatches(tmp_path / "obj.npz")
    bomb = _member(tmp_path / "bomb.npz", (1, 3, 4000, 4000), bytes(1 << 20))
    with pytest.raises(CaffeFormatError, match="inflates to"):
        NpzBatches(bomb)
    from fcn_port.models import memory

    ok = _member(tmp_path / "ok.npz", (1, 3, 64, 64), bytes(4 * 3 * 64 * 64))
    assert len(NpzBatches(ok)) == 1
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 40000)
    with pytest.raises(CaffeFormatError, match="free"):
        NpzBatches(ok)


class _Recorder:
    """An indexed source that records which draws were read."""

    def __init__(self, path):
        self.batches, self.read = NpzBatches(path), []

    def __len__(self):
        return len(self.batches)

    def __getitem__(self, k):
        self.read.append(k)
        return self.batches[k]


def test_data_order_caffe_restarts_the_draws_on_resume(tmp_path, kit, monkeypatch):
    """Issue 17: Caffe builds its data layers afresh when it restores a snapshot, so a resumed
    run reads draws 0, 1, ... again; fcn-port's default continues where the uninterrupted run
    would be. Both are options of the same run."""
    from fcn_port.solvers.train import Trainer

    folder = kit.make_folder(tmp_path, 'weights: "init.caffemodel"\nmax_iter: 2\nsnapshot: 2\n'
                             "iter_size: 2\n")
    monkeypatch.chdir(folder)
    Trainer("solver.prototxt", sources=NpzBatches("b.npz"), echo=lambda line: None).solve()
    for order, want in (("continuous", [4, 5, 6, 7]), ("caffe", [0, 1, 2, 3])):
        source = _Recorder("b.npz")
        trainer = Trainer("solver.prototxt", sources=source, max_iter=4, data_order=order,
                          snapshot="snap/tiny_iter_2.solverstate", echo=lambda line: None)
        source.read.clear()  # the reads of the net's shapes
        trainer.solve()
        # the last read may be the prefetch of the pass after the last (solvers/data._Ahead)
        assert source.read in (want, want + [want[-1] + 1]), order


def test_data_order_draw_indices():
    """Draw of pass p of iteration it, process r of N (iter_size 2, process 1 of 2, a run
    started at iteration 10): continuous (it*2+p)*2+1; caffe ((it-10)*2+p)*2+1, or
    (it-10)*2+p for a registered reader (every process the same draws, as python/train.py)."""
    from types import SimpleNamespace

    feeder = Feeder([], None, rank=1, world=2, iter_size=2)
    plain, reader = SimpleNamespace(reader=False), SimpleNamespace(reader=True)
    assert feeder.draw_index(plain, 10, 1) == 43 == feeder.draw_index(reader, 10, 1)
    feeder.order, feeder.start = "caffe", 10
    assert [feeder.draw_index(plain, 10, p) for p in (0, 1)] == [1, 3]
    assert [feeder.draw_index(reader, it, p) for it in (10, 11) for p in (0, 1)] == [0, 1, 2, 3]
    with pytest.raises(UserInputError):
        Feeder([], None, order="random")
