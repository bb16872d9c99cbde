"""fcn-port download against a local HTTP server (127.0.0.1, a thread): full and resumed
transfers (bytes counted at the server, download_server.py), restarts, the manifest, refused files, safe extraction
into the official data/ layout, and every error as one line with exit status 2."""
import dataclasses
import errno
import hashlib
import io
import re
import socket
import tarfile

import numpy as np
import pytest

from fcn_port.port.formats.caffemodel import write_weights
from fcn_port.reproduce import archive, catalog, fetch
from download_server import fails, manifest, nothing_kept, run
from helpers import ORACLE

FCN8S = (ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel").read_bytes()
FCN16S = (ORACLE / "fcn" / "voc-fcn16s" / "weights.caffemodel").read_bytes()
FCN8S_FILE = "fcn8s-heavy-pascal.caffemodel"


def test_full_download_and_manifest(server, tmp_path):
    base, st = server
    st.serve("/w.caffemodel", FCN8S)
    assert run("voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w.caffemodel") == 0
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S
    assert not (tmp_path / f"{FCN8S_FILE}.part").exists()
    rec = manifest(tmp_path)[FCN8S_FILE]
    assert rec["size"] == len(FCN8S) and rec["sha256"] == hashlib.sha256(FCN8S).hexdigest()
    assert rec["checked"]["model"] == "voc-fcn8s" and rec["checked"]["classes"] == [21]
    assert st.sent == len(FCN8S) and st.requests == [("/w.caffemodel", None)]


def test_mirror_replaces_scheme_and_host(server, tmp_path, monkeypatch):
    base, st = server
    st.serve("/mirror/fcn8s-heavy-pascal.caffemodel", FCN8S)
    monkeypatch.setenv("FCN_PORT_MIRROR", base + "/mirror/")
    assert run("voc-fcn8s", "-o", tmp_path) == 0
    assert st.requests == [("/mirror/fcn8s-heavy-pascal.caffemodel", None)]


def test_resume_after_dropped_connection(server, tmp_path):
    base, st = server
    st.serve("/w", FCN8S)
    st.drops, st.drop_after = 1, 300_000
    assert run("voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w") == 0
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S
    assert st.sent == len(FCN8S)  # the first 300,000 bytes were not fetched twice
    assert st.requests == [("/w", None), ("/w", "bytes=300000-")]


def test_resume_in_a_later_run(server, tmp_path, capsys):
    base, st = server
    st.serve("/w", FCN8S)
    st.drops, st.drop_after = 1, 100_000
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", "--retries", 0,
          words=("dropped", "resume"))
    assert not (tmp_path / FCN8S_FILE).exists()
    assert (tmp_path / f"{FCN8S_FILE}.part").stat().st_size == 100_000
    assert run("voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w") == 0
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S and st.sent == len(FCN8S)


def test_restart_when_range_is_ignored(server, tmp_path):
    base, st = server
    st.serve("/w", FCN8S)
    st.ignore_range = True
    (tmp_path / f"{FCN8S_FILE}.part").write_bytes(b"\0" * 5000)  # not the file's first bytes
    assert run("voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w") == 0
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S
    assert st.requests == [("/w", "bytes=5000-")] and st.sent == len(FCN8S)


def test_present_file_checked_against_manifest(server, tmp_path, capsys):
    base, st = server
    st.serve("/w", FCN8S)
    url = f"{base}/w"
    assert run("voc-fcn8s", "-o", tmp_path, "--url", url) == 0 and capsys.readouterr()
    assert run("voc-fcn8s", "-o", tmp_path, "--url", url) == 0
    assert "already present" in capsys.readouterr().out and len(st.requests) == 1
    changed = bytearray(FCN8S)
    changed[-1] ^= 0xFF  # same size, one byte differs
    (tmp_path / FCN8S_FILE).write_bytes(bytes(changed))
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", url, words=("changed", FCN8S_FILE))
    assert (tmp_path / FCN8S_FILE).read_bytes() == bytes(changed) and len(st.requests) == 1
    assert run("voc-fcn8s", "-o", tmp_path, "--url", url, "--force") == 0
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S



def test_wrong_model_or_broken_file_refused(server, tmp_path, capsys):
    base, st = server
    st.serve("/w", FCN16S)
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w",
          words=("voc-fcn16s", "voc-fcn8s"))
    assert nothing_kept(tmp_path, FCN8S_FILE)
    assert not (tmp_path / "downloads.json").exists()
    st.serve("/w", FCN8S[:len(FCN8S) // 2])  # a complete transfer of a broken file
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", words=(FCN8S_FILE,))
    assert nothing_kept(tmp_path, FCN8S_FILE)


def test_a_failed_first_download_leaves_no_empty_folders(server, tmp_path, capsys):
    base, st = server
    fails(capsys, "voc-fcn8s", "-o", tmp_path / "new" / "weights", "--url", f"{base}/missing",
          words=("404",))
    assert not (tmp_path / "new").exists()
    (tmp_path / "old").mkdir()  # a folder that was there stays
    fails(capsys, "voc-fcn8s", "-o", tmp_path / "old", "--url", f"{base}/missing",
          words=("404",))
    assert (tmp_path / "old").is_dir()


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_refused(server, tmp_path, capsys, ctype):
    base, st = server
    st.serve("/w", b"<!DOCTYPE html><html><body>Moved</body></html>\n", ctype)
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", words=("HTML",))
    assert nothing_kept(tmp_path, FCN8S_FILE)


def _vgg16(path, fc8=1000):
    """A tiny VGG16 classifier: the 13 convs, fc6 to fc8, at width 2."""
    rng, params, c = np.random.default_rng(0), {}, 3
    for s, n in enumerate((2, 2, 3, 3, 3), 1):
        for i in range(1, n + 1):
            params[f"conv{s}_{i}"] = [rng.standard_normal((2, c, 3, 3), np.float32),
                                      np.zeros(2, np.float32)]
            c = 2
    for name, shape in (("fc6", (8, 2 * 7 * 7)), ("fc7", (8, 8)), ("fc8", (fc8, 8))):
        params[name] = [rng.standard_normal(shape, np.float32), np.zeros(shape[0], np.float32)]
    write_weights(params, path)
    return path.read_bytes()


def test_vgg16_checked(server, tmp_path, capsys, monkeypatch):
    base, st = server
    monkeypatch.setitem(catalog.CATALOG, "vgg16",
                        dataclasses.replace(catalog.CATALOG["vgg16"], ref=None))
    st.serve("/vgg", _vgg16(tmp_path / "v.caffemodel"))
    st.serve("/vgg10", _vgg16(tmp_path / "v10.caffemodel", fc8=10))
    st.serve("/fcn", FCN8S)
    out = tmp_path / "out"
    for path, word in (("/vgg10", "1000"), ("/fcn", "VGG16")):
        fails(capsys, "vgg16", "-o", out, "--url", base + path, words=(word,))
        assert nothing_kept(out, "VGG_ILSVRC_16_layers.caffemodel")
    assert run("vgg16", "-o", out, "--url", f"{base}/vgg") == 0
    assert manifest(out)["VGG_ILSVRC_16_layers.caffemodel"]["checked"]["widths"] == [2] * 5


def test_reference_checksum_refused(server, tmp_path, capsys, monkeypatch):
    base, st = server
    monkeypatch.setitem(catalog.CATALOG, "vgg16", dataclasses.replace(
        catalog.CATALOG["vgg16"], ref=("md5", "0" * 32, "a test")))
    st.serve("/vgg", _vgg16(tmp_path / "v.caffemodel"))  # a VGG16, but not the recorded file
    fails(capsys, "vgg16", "-o", tmp_path / "o", "--url", f"{base}/vgg", words=("md5",))
    assert nothing_kept(tmp_path / "o", "VGG_ILSVRC_16_layers.caffemodel")


def test_cli_errors_one_line(server, tmp_path, capsys, monkeypatch):
    base, st = server
    st.serve("/w", FCN8S)
    url = f"{base}/w"
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/missing", words=("404",))
    st.status = 500
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", url, "--retries", 0, words=("500",))
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", url, "--retries", 1, words=("500",))
    assert len(st.requests) == 4  # 404 once, 500 once, then 500 and one retry
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url",
              f"http://127.0.0.1:{s.getsockname()[1]}/w", words=("refused",))
    st.status, st.delay = None, 1.0
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", url, "--timeout", 0.2, "--retries", 0,
          words=("timed out",))
    fails(capsys, "nyud-fcn32s-color-d", words=("caffemodel-url", "surgery color-d"))
    fails(capsys, "no-such-model", words=("no-such-model", "--list"))
    fails(capsys, words=("--list",))
    fails(capsys, "voc-fcn8s", "voc-fcn16s", "--url", url, words=("one NAME",))
    (tmp_path / "file").touch()
    fails(capsys, "voc-fcn8s", "-o", tmp_path / "file", words=("not a folder",))
    monkeypatch.setenv("FCN_PORT_MIRROR", "ftp:/x")
    fails(capsys, "voc-fcn8s", "-o", tmp_path, words=("FCN_PORT_MIRROR",))
    assert nothing_kept(tmp_path, FCN8S_FILE)


def test_disk_full_is_one_line_and_resumable(server, tmp_path, capsys, monkeypatch):
    base, st = server
    st.serve("/w", FCN8S)

    class Full(io.FileIO):
        def write(self, b):
            if self.tell() + len(b) > 200_000:
                raise OSError(errno.ENOSPC, "No space left on device")
            return super().write(b)

    monkeypatch.setattr(fetch, "open", lambda p, mode: Full(p, mode.replace("b", "")),
                        raising=False)
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", words=("disk full",))
    assert not (tmp_path / FCN8S_FILE).exists()
    monkeypatch.undo()
    assert run("voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w") == 0
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S


def _tar(path, members, mode="w"):
    """A tar of (name, bytes) files, (name, None) folders, (name, ('sym'|'hard', target))."""
    with tarfile.open(path, mode) as tar:
        for name, body in members:
            info = tarfile.TarInfo(name)
            if body is None:
                info.type = tarfile.DIRTYPE
            elif isinstance(body, tuple):
                info.type = tarfile.SYMTYPE if body[0] == "sym" else tarfile.LNKTYPE
                info.linkname = body[1]
            else:
                info.size = len(body)
            tar.addfile(info, io.BytesIO(body) if isinstance(body, bytes) else None)
    return path.read_bytes()


VOC = "TrainVal/VOCdevkit/VOC2011/"
IDS = "".join(f"2011_{i:06d}\n" for i in range(736)).encode()


def _serve_data(st, tmp_path, voc_extra=()):
    path = lambda name: re.sub(r"^https?://[^/]+", "", catalog.CATALOG[name].url)  # noqa: E731
    st.serve(path("voc2011"), _tar(tmp_path / "voc.tar", [
        (VOC, None), (VOC + "ImageSets/Segmentation/val.txt", b"2007_000033\n"),
        (VOC + "JPEGImages/2007_000033.jpg", b"jpeg"), ("TrainVal/VOCdevkit/x.txt", b"x"),
        *voc_extra]))
    st.serve(path("sbd"), _tar(tmp_path / "sbd.tgz", [
        ("benchmark_RELEASE/dataset/train.txt", b"2008_000002\n"),
        ("benchmark_RELEASE/dataset/cls/2008_000002.mat", b"mat"),
        ("benchmark_RELEASE/benchmark_code_RELEASE/demo.m", b"m")], "w:gz"))
    st.serve(path("seg11valid"), IDS, "text/plain")


@pytest.fixture
def no_refs(monkeypatch):
    for name in ("voc2011", "sbd"):  # generated archives cannot match the published ones
        monkeypatch.setitem(catalog.CATALOG, name,
                            dataclasses.replace(catalog.CATALOG[name], ref=None))


def test_extract_into_official_layout(server, tmp_path, capsys, monkeypatch, no_refs):
    base, st = server
    _serve_data(st, tmp_path)
    monkeypatch.setenv("FCN_PORT_MIRROR", base)
    out = tmp_path / "data"
    assert run("seg11valid", "sbd", "voc2011", "-o", out, "--extract") == 0  # any order
    voc = out / "pascal" / "VOC2011"
    assert (voc / "ImageSets/Segmentation/val.txt").read_bytes() == b"2007_000033\n"
    assert (voc / "JPEGImages/2007_000033.jpg").read_bytes() == b"jpeg"
    assert (voc / "ImageSets/Segmentation/seg11valid.txt").read_bytes() == IDS
    assert (out / "sbdd/dataset/cls/2008_000002.mat").read_bytes() == b"mat"
    assert not (out / "sbdd/benchmark_code_RELEASE").exists()
    assert sorted(p.name for p in out.iterdir()) == [
        "VOCtrainval_25-May-2011.tar", "benchmark.tgz", "downloads.json", "pascal", "sbdd",
        "seg11valid.txt"]  # no temporary folders left
    rec = manifest(out)
    assert rec["benchmark.tgz"]["extracted"] == "sbdd/dataset"
    assert rec["seg11valid.txt"]["checked"] == {"ids": 736}
    capsys.readouterr()
    n = len(st.requests)
    assert run("voc2011", "sbd", "seg11valid", "-o", out, "--extract") == 0
    assert len(st.requests) == n and capsys.readouterr().out.count("already") == 6


@pytest.mark.parametrize("evil", [
    ("../evil", b"x"), ("/tmp/fcn-port-evil-abs", b"x"), (VOC + "a/../../../../evil", b"x"),
    (VOC + "link", ("sym", "../../../../../evil")), (VOC + "abs", ("sym", "/etc/passwd")),
    (VOC + "hard", ("hard", "../evil")), (VOC + "hard2", ("hard", "TrainVal/VOCdevkit/x.txt")),
    # links inside the archive's root that climb out once VOC2011 moves up to pascal/ (issue 16)
    (VOC + "up", ("sym", "../../../x")), (VOC + "ImageSets", ("sym", "../VOC2011")),
    (VOC + "inside", ("hard", VOC + "ok.txt"))])
def test_unsafe_archive_refused(tmp_path, evil):
    tar = tmp_path / "a.tar"
    _tar(tar, [(VOC + "ok.txt", b"ok"), evil])
    target = tmp_path / "out" / "VOC2011"
    with pytest.raises(archive.UnsafeArchiveError):
        archive.extract_tree(tar, VOC.rstrip("/"), target)
    assert not (tmp_path / "out").exists()  # not even the folders made for the target
    assert not (tmp_path / "evil").exists()


def test_unsafe_archive_cli(server, tmp_path, capsys, monkeypatch, no_refs):
    base, st = server
    _serve_data(st, tmp_path, voc_extra=[("../evil", b"x")])
    monkeypatch.setenv("FCN_PORT_MIRROR", base)
    out = tmp_path / "data"
    fails(capsys, "voc2011", "-o", out, "--extract", words=("../evil", "nothing extracted"))
    assert not (out / "pascal").exists() and not (tmp_path / "evil").exists()
    fails(capsys, "seg11valid", "-o", out, "--extract", words=("voc2011",))
    assert not (out / "pascal").exists()


def test_wrong_archive_refused(server, tmp_path, capsys, monkeypatch, no_refs):
    base, st = server
    _serve_data(st, tmp_path)
    st.files["/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz"] = \
        st.files["/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar"]
    monkeypatch.setenv("FCN_PORT_MIRROR", base)
    fails(capsys, "sbd", "-o", tmp_path / "d", words=("benchmark_RELEASE",))
    assert nothing_kept(tmp_path / "d", "benchmark.tgz")
    st.serve("/ids", IDS[:-12])  # 735 ids
    fails(capsys, "seg11valid", "-o", tmp_path / "d", "--url", f"{base}/ids", words=("735",))
