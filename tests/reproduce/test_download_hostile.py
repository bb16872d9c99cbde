"""fcn-port download against servers and manifests that would hang it or end in an internal
error (issue 16): a server trickling a byte at a time (in the body, or in a header that never
ends) is given up after a window of twice --timeout; a 206 answer to a request for the whole
file is one line, not a recursion; a downloads.json of the wrong shape is one line."""
import os
import time

import pytest

from download_server import fails, nothing_kept
from helpers import ORACLE

FCN8S = (ORACLE / "fcn" / "voc-fcn8s" / "weights.caffemodel").read_bytes()
FCN8S_FILE = "fcn8s-heavy-pascal.caffemodel"


@pytest.mark.parametrize("where", ["trickle", "trickle_headers"])
def test_trickling_server_stalls_within_the_windows(server, tmp_path, capsys, where):
    base, st = server
    st.serve("/w", FCN8S)
    setattr(st, where, 0.02)  # 50 bytes/s: every read returns within the socket's timeout
    began = time.monotonic()
    line = fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", "--timeout", 0.5,
                 "--retries", 0, words=("stalled", "1,024 bytes/s"))
    assert time.monotonic() - began < 4  # one window of twice 0.5 s
    assert 0 < st.sent < 100
    if where == "trickle":
        assert "kept in" in line  # what arrived is resumed by the next run
    else:
        assert nothing_kept(tmp_path, FCN8S_FILE)


def test_whole_file_answered_with_a_part(server, tmp_path, capsys):
    base, st = server
    st.serve("/w", FCN8S)
    st.wrong_range = "bytes 100-104/1000"
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", words=("206",))
    assert len(st.requests) == 1 and nothing_kept(tmp_path, FCN8S_FILE)


def test_resume_answered_with_another_part_starts_once_more(server, tmp_path, capsys):
    base, st = server
    st.serve("/w", FCN8S)
    (tmp_path / f"{FCN8S_FILE}.part").write_bytes(FCN8S[:5000])
    st.wrong_range = "bytes 100-104/1000"
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w", words=("206",))
    assert st.requests == [("/w", "bytes=5000-"), ("/w", None)]


@pytest.mark.parametrize("text, words", [
    ('{"a":' * 100000 + "1" + "}" * 100000, ("nested too deeply",)),
    ('{"format": "fcn-port-downloads/1", "files": [1]}', ("files", "not an object")),
    ('{"format": "fcn-port-downloads/1", "files": {"%s": {"size": "9"}}}' % FCN8S_FILE,
     ("size and a sha256",)),
    ('{"format": "fcn-port-downloads/1", "files": {"%s": 7}}' % FCN8S_FILE, ("sha256",)),
    ("\xff\xfe", ("UTF-8",)),
])
def test_manifest_of_the_wrong_shape(server, tmp_path, capsys, text, words):
    base, st = server
    st.serve("/w", FCN8S)
    (tmp_path / FCN8S_FILE).write_bytes(FCN8S)
    (tmp_path / "downloads.json").write_text(text, encoding="latin-1")
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w",
          words=("downloads.json",) + words)
    assert st.requests == []
    assert (tmp_path / FCN8S_FILE).read_bytes() == FCN8S
    assert (tmp_path / "downloads.json").read_text(encoding="latin-1") == text


def test_manifest_that_is_a_fifo_is_refused_not_waited_on(server, tmp_path, capsys):
    base, st = server
    os.mkfifo(tmp_path / "downloads.json")
    fails(capsys, "voc-fcn8s", "-o", tmp_path, "--url", f"{base}/w",
          words=("downloads.json", "regular file"))
