"""What a file is, from its first bytes: the hints behind "this is not a caffemodel" messages.

Caffe itself never guesses: ``ReadProtoFromBinaryFile`` (``src/caffe/util/io.cpp``) hands the
bytes to protobuf and stops with "Check failed: ReadProtoFromBinaryFile" when they do not parse,
and ``ReadProtoFromTextFile`` does the same for text. fcn-port keeps that strictness (nothing is
read as something it is not) but, when a reader fails, says what the file appears to be
instead: a prototxt passed where a caffemodel was expected, an fcn-port / PyTorch checkpoint
(a zip), a pickle, an image, an HDF5 file, a folder. :func:`sniff` looks at the first 4 KiB only
and never decides whether a reader runs: it only words the error of a reader that already
failed (a tiny binary caffemodel can be valid UTF-8 text, so text-looking bytes are no proof).
"""
import os
import re

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_MAGICS = [(HDF5_MAGIC, "hdf5"), (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip"),
           (b"\x89PNG\r\n\x1a\n", "image"), (b"\xff\xd8\xff", "image"), (b"GIF8", "image"),
           (b"BM", "image"), (b"\x1f\x8b", "gzip")]

WORDS = {
    "folder": "a folder, not a file",
    "hdf5": "an HDF5 file",
    "zip": "a zip archive (a PyTorch / fcn-port checkpoint .pt)",
    "pickle": "a Python pickle (an old-style torch.save file)",
    "image": "an image",
    "gzip": "gzip-compressed (decompress it first)",
    "text": "text (a prototxt?)",
    "binary": "binary data",
    "empty": "empty",
}


def sniff(path):
    """One of 'missing', 'folder', 'empty', 'hdf5', 'zip', 'pickle', 'image', 'gzip', 'text' or
    'binary'. Never raises for an unreadable file: that is 'missing'."""
    if os.path.isdir(path):
        return "folder"
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return "missing"
    return sniff_bytes(head)


def sniff_bytes(head):
    """:func:`sniff` for the first bytes of a file."""
    if not head:
        return "empty"
    for magic, kind in _MAGICS:
        if head.startswith(magic) and (kind != "image" or magic != b"BM" or len(head) > 14):
            return kind
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    return "text" if looks_like_text(head) else "binary"


def looks_like_text(head):
    """UTF-8 without NULs or other control bytes than tab, newlines and form feed (a multi-byte
    character cut at the end of ``head`` still counts)."""
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if len(head) < 4096 or e.start <= len(head) - 4:  # only a full head can cut a character
            return False
        text = head[:e.start].decode("utf-8")
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)


def is_prototxt(path):
    """Whether ``path`` looks like prototxt text (see the caveat in the module docstring)."""
    return sniff(path) == "text"


_FIELD = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*\s*[:{]")


def _meaningful_lines(path, n=4096):
    with open(path, "rb") as f:
        head = f.read(n)
    return [line.strip() for line in head.splitlines()
            if line.strip() and not line.strip().startswith(b"#")]


def prototxt_like(path):
    """Whether the first line that is no comment starts as protobuf text does: ``field:`` or
    ``message {`` (a README, a CSV or a Python file does not)."""
    try:
        lines = _meaningful_lines(path)
    except OSError:
        return True
    return not lines or bool(_FIELD.match(lines[0]))


def first_words(path):
    try:
        lines = _meaningful_lines(path)
    except OSError:
        return "unreadable"
    words = lines[0].decode("utf-8", "replace") if lines else ""
    return f"it begins '{words[:40]}'" if words else "only comments"


def hint(path, wanted):
    """A clause for an error about ``path`` (which failed to read as ``wanted``, e.g.
    'caffemodel'), saying what the file seems to be instead; '' when nothing useful is known."""
    kind = sniff(path)
    if kind == "text" and not prototxt_like(path):
        return f"this is text, not a {wanted} (nor a prototxt: {first_words(path)})"
    if kind == "text":
        if wanted == "caffemodel":
            return ("this is a prototxt (text), not a binary caffemodel; convert takes the "
                    "caffemodel, pass the prototxt with --prototxt")
        return "this is text (a prototxt?), not a binary Caffe file"
    if kind == "zip":
        return ("this is a zip archive, likely a PyTorch / fcn-port checkpoint (.pt), not a "
                f"{wanted}; checkpoints are read by infer, export and fcn_port.models.load")
    if kind in ("pickle", "image", "gzip", "hdf5", "folder"):
        return f"this is {WORDS[kind]}, not a {wanted}"
    return ""
