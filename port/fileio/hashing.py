"""A file's sha256 (or several digests at once), read from the page cache piece by piece, and a
thread to compute it in.

:func:`sha256` maps the file read-only and hashes 64 MiB pieces, letting each go once hashed
(``MADV_DONTNEED``), so hashing a 538 MB caffemodel costs no copy and little resident memory.
hashlib releases the GIL, so :func:`in_background` overlaps it with the caller's other work.
"""
import hashlib
import mmap
import os
import threading

PIECE = 64 << 20  # bytes hashed, then let go, at a time


def sha256(path):
    """The hex sha256 of the file at ``path``."""
    return digests(path)["sha256"]


def digests(path, algos=("sha256",), progress=None):
    """{algorithm: hex digest} of the file at ``path``, every algorithm in one pass over it;
    ``progress(n)`` (optional) is told each piece's size as it is hashed."""
    hs = {a: hashlib.new(a) for a in algos}
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size:
            piece = PIECE
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                for at in range(0, len(m), piece):  # from the page cache, no copies; each
                    view = memoryview(m)[at:at + piece]  # piece is let go once hashed
                    for h in hs.values():
                        h.update(view)
                    view.release()
                    m.madvise(mmap.MADV_DONTNEED, at, min(piece, len(m) - at))
                    if progress is not None:
                        progress(min(piece, len(m) - at))
    return {a: h.hexdigest() for a, h in hs.items()}


def in_background(fn, *args):
    """Run ``fn(*args)`` in a thread (hashlib releases the GIL); call the result to join."""
    box = {}

    def run():
        try:
            box["value"] = fn(*args)
        except Exception as e:  # noqa: BLE001  (handed to the caller, who re-raises it)
            box["error"] = e

    worker = threading.Thread(target=run, daemon=True)
    worker.start()

    def result():
        worker.join()
        if "error" in box:
            raise box["error"]
        return box["value"]
    return result
