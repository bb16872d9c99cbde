"""A file's sha256, read from the page cache piece by piece, and a thread to compute it in.

:func:`sha256` maps the file read-only and hashes 64 MiB pieces, letting each go once hashed
(``MADV_DONTNEED``), so hashing a 538 MB caffemodel costs no copy and little resident memory.
hashlib releases the GIL, so :func:`in_background` overlaps it with the caller's other work.
"""
import hashlib
import mmap
import os
import threading


def sha256(path):
    """The hex sha256 of the file at ``path``."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return hashlib.sha256().hexdigest()
        h, piece = hashlib.sha256(), 64 << 20
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            for at in range(0, len(m), piece):  # from the page cache, no copies; each piece
                h.update(memoryview(m)[at:at + piece])  # is let go once hashed (RSS stays low)
                m.madvise(mmap.MADV_DONTNEED, at, min(piece, len(m) - at))
        return h.hexdigest()


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
