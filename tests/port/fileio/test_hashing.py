"""port/fileio/hashing: digests of a file in one mapped pass, against hashlib on its bytes."""
import hashlib

from fcn_port.port.fileio import hashing


def test_digests_match_hashlib_and_report_progress(tmp_path, monkeypatch):
    data = bytes(range(256)) * 1000 + b"tail"
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    seen = []
    got = hashing.digests(path, ("sha256", "md5"), seen.append)
    assert got == {"sha256": hashlib.sha256(data).hexdigest(), "md5": hashlib.md5(data).hexdigest()}
    assert sum(seen) == len(data)
    assert hashing.sha256(path) == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert hashing.sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_pieces_cover_a_file_longer_than_one_piece(tmp_path, monkeypatch):
    import mmap

    page = mmap.PAGESIZE  # pieces stay page-aligned, as madvise needs
    data = bytes(range(256)) * (page // 128) + b"!" * (page // 2)  # 2.5 pages
    path = tmp_path / "g.bin"
    path.write_bytes(data)
    seen = []
    monkeypatch.setattr(hashing, "PIECE", page)
    assert hashing.digests(path, progress=seen.append)["sha256"] == hashlib.sha256(data).hexdigest()
    assert seen == [page, page, page // 2]
