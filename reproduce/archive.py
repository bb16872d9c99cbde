"""Unpacking the dataset archives safely into the official ``data/`` layout.

The official instructions (``data/pascal/README.md``) leave unpacking to the user: ``tar xf``
anywhere, then point ``voc_dir`` / ``sbdd_dir`` at the right inner folder. The VOC nets read
``../data/pascal/VOC2011`` and ``../data/sbdd/dataset``; VOC 2011's tar holds that folder as
``TrainVal/VOCdevkit/VOC2011`` and SBD's ``benchmark.tgz`` as ``benchmark_RELEASE/dataset``
(its name says gzip, but some copies are plain tar: the compression is read from the bytes).

:func:`extract_tree` checks every member before writing it: no absolute name, no ``..``, no
link of any kind (the official archives hold none, and a link checked against the archive's
root can still lead out once its inner folder moves up to ``data/``), no device or FIFO; one bad
member refuses the whole archive. Only the wanted inner folder is unpacked, into a private temporary folder beside the
target, and moved into place at the end: the target appears whole or not at all.
"""
import contextlib
import os
import shutil
import tarfile
import tempfile

from .fetch import DownloadError


class UnsafeArchiveError(DownloadError):
    """An archive member would land outside the folder (absolute, ``..``, outward link)."""


def _clean(name):
    """The member name as relative POSIX parts, or None if it is absolute or climbs out."""
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return None
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return None if ".." in parts else parts


def check_member(m, archive):
    """UnsafeArchiveError if member ``m`` of ``archive`` could write outside the folder."""
    def bad(why):
        return UnsafeArchiveError(f"{archive}: member {m.name!r} {why}; nothing extracted")

    parts = _clean(m.name)
    if parts is None:
        raise bad("is absolute or climbs out with '..'")
    if m.issym() or m.islnk():
        kind = "a symbolic link" if m.issym() else "a hard link"
        raise bad(f"is {kind} (to {m.linkname!r}); the official archives hold only files and "
                  "folders")
    if not (m.isfile() or m.isdir()):
        raise bad("is a device or FIFO")
    return parts


def _inside(parts, root):
    return parts[:len(root)] == root and len(parts) > len(root)


def extract_tree(path, inner, target, *, desc="extracting"):
    """Unpack folder ``inner`` of tar ``path`` (any compression) to ``target`` (which must not
    exist). Returns the number of members written."""
    from tqdm import tqdm

    root = inner.split("/")
    parent = os.path.dirname(os.path.abspath(target))
    made = _missing(parent)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".extract-", dir=parent)
    written, done = 0, False
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar, \
                tqdm(total=os.path.getsize(path), unit="B", unit_scale=True, desc=desc,
                     leave=False, disable=None) as bar:
            for m in tar:
                parts = check_member(m, path)
                if _inside(parts, root):
                    m.name = "/".join(parts)
                    kw = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                    tar.extract(m, tmp, set_attrs=not m.isdir(), **kw)
                    written += 1
                bar.update(raw.tell() - bar.n)
        src = os.path.join(tmp, *root)
        if not os.path.isdir(src):
            raise DownloadError(f"{path}: no folder {inner}/ in the archive: not the expected "
                                f"archive; nothing extracted")
        os.replace(src, target)
        done = True
    except tarfile.TarError as e:
        raise DownloadError(f"{path}: broken archive ({e}); nothing extracted") from None
    except OSError as e:
        if e.errno == 28:
            raise DownloadError(f"{path}: disk full while extracting to {target}; nothing "
                                f"extracted") from None
        raise DownloadError(f"{path}: cannot extract to {target} ({e.strerror or e})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in made if not done else ():  # the folders made for the target, if empty
            with contextlib.suppress(OSError):
                os.rmdir(folder)
    return written


def _missing(folder):
    """``folder`` and those of its parents that do not exist yet, deepest first."""
    out = []
    while not os.path.exists(folder):
        out.append(folder)
        folder = os.path.dirname(folder)
    return out


def first_member(path):
    """The first member's name of tar ``path`` (any compression), or DownloadError."""
    try:
        with tarfile.open(path, mode="r:*") as tar:
            m = tar.next()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DownloadError(f"{path}: not a tar archive ({e})") from None
    if m is None:
        raise DownloadError(f"{path}: an empty tar archive")
    return m.name
