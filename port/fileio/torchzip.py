"""The zip layout of a ``torch.save`` file, as far as :mod:`.torchsave` fills one in place.

torch's writer (miniz, through ``PyTorchStreamWriter``) stores every record uncompressed,
aligns record data to 64 bytes, and sets flag bit 3: the CRC-32 and sizes of a record follow
its data in a data descriptor (``PK\\x07\\x08 crc size size``); the central directory entry
holds the CRC again. Files past 4 GiB or 65535 records use zip64 (sizes and offsets in the
extra field with id 1, and the zip64 end records).

Its last record, ``.data/serialization_id``, is 40 digits: 20 hashing the record names and 20
folding (``c10::hash_combine``) the CRC-32 of every data descriptor written before it (an empty
record has none). So changing a
record's bytes means changing its CRC in two places and the id; :func:`put_crcs` does all three.
"""
import dataclasses
import os
import struct
import zlib

from ..errors import UnsupportedError

_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # central directory file header, 46 bytes
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # local file header, 30 bytes
_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory, 22 bytes
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # zip64 end of central directory, 56 bytes
_LOCATOR64 = struct.Struct("<4sIQI")  # zip64 end of central directory locator, 20 bytes
_HAS_DESCRIPTOR = 1 << 3
_SERIALIZATION_ID = ".data/serialization_id"


class LayoutError(UnsupportedError):
    """A file is not laid out as this module expects of torch.save's zips."""

    def __init__(self, path, what):
        super().__init__(f"{path}: {what}")


@dataclasses.dataclass
class Record:
    """One zip member: its name, its data span, its CRC and every offset that holds the CRC."""

    name: str
    size: int
    method: int  # 0: stored
    crc: int
    data_at: int
    crc_at: tuple  # data descriptor (or local header) field, central directory field
    described: bool  # its CRC follows the data in a data descriptor (flag bit 3)


def records(fd, path):
    """The members of the zip open on ``fd``, in central directory (= writing) order."""
    start, count = _central_directory(fd, path)
    found, at = [], start
    for _ in range(count):
        record, at = _central_entry(fd, at, path)
        found.append(record)
    return found


def _central_entry(fd, at, path):
    (sig, _, _, flags, method, _, _, crc, csize, usize, name_len, extra_len, comment_len,
     _, _, _, local_at) = _CENTRAL.unpack(_pread(fd, _CENTRAL.size, at, path))
    if sig != b"PK\x01\x02":
        raise LayoutError(path, f"byte {at}: expected a zip central directory entry")
    rest = _pread(fd, name_len + extra_len, at + _CENTRAL.size, path)
    name = rest[:name_len].decode("utf-8", "replace")
    usize, csize, local_at = _zip64_values(rest[name_len:], (usize, csize, local_at))
    local = _LOCAL.unpack(_pread(fd, _LOCAL.size, local_at, path))
    if local[0] != b"PK\x03\x04":
        raise LayoutError(path, f"byte {local_at}: expected the zip local header of {name}")
    data_at = local_at + _LOCAL.size + local[9] + local[10]
    if flags & _HAS_DESCRIPTOR:
        if _pread(fd, 4, data_at + csize, path) != b"PK\x07\x08":
            raise LayoutError(path, f"byte {data_at + csize}: expected the data descriptor of {name}")
        first = data_at + csize + 4
    else:
        first = local_at + 14
    record = Record(name, usize, method, crc, data_at, (first, at + 16),
                    bool(flags & _HAS_DESCRIPTOR))
    return record, at + _CENTRAL.size + name_len + extra_len + comment_len


def _central_directory(fd, path):
    """(offset of the central directory, number of entries), zip64 or not."""
    size = os.fstat(fd).st_size
    tail_len = min(size, _EOCD.size + 0xFFFF)
    tail = _pread(fd, tail_len, size - tail_len, path)
    i = tail.rfind(b"PK\x05\x06")
    if i < 0:
        raise LayoutError(path, "expected a zip file; it has no end-of-central-directory record")
    _, _, _, _, count, _, start, _ = _EOCD.unpack_from(tail, i)
    if count == 0xFFFF or start == 0xFFFFFFFF:
        eocd_at = size - tail_len + i
        sig, _, eocd64_at, _ = _LOCATOR64.unpack(_pread(fd, _LOCATOR64.size, eocd_at - 20, path))
        eocd64 = _EOCD64.unpack(_pread(fd, _EOCD64.size, eocd64_at, path))
        if sig != b"PK\x06\x07" or eocd64[0] != b"PK\x06\x06":
            raise LayoutError(path, "expected zip64 end records before the end of central directory")
        count, start = eocd64[7], eocd64[9]
    return start, count


def _zip64_values(extra, values):
    """(uncompressed size, compressed size, local header offset): those at 0xFFFFFFFF are in
    the zip64 extra field (id 1), in that order."""
    at, out = 0, list(values)
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, at)
        if tag == 1:
            pos = at + 4
            for i, value in enumerate(out):
                if value == 0xFFFFFFFF:
                    out[i] = struct.unpack_from("<Q", extra, pos)[0]
                    pos += 8
            break
        at += 4 + length
    return out


def _pread(fd, n, at, path):
    data = os.pread(fd, n, at)
    if len(data) != n:
        raise LayoutError(path, f"expected at least {at + n} bytes; the file ends before")
    return data


def put_crcs(fd, found, crcs):
    """Write ``crcs`` ({record name: CRC-32}) into every place the zip keeps them, and bring
    ``.data/serialization_id`` in line with them."""
    for record in found:
        if record.name in crcs:
            _put_crc(fd, record, crcs[record.name])
    _put_serialization_id(fd, found, crcs)


def _put_crc(fd, record, crc):
    packed = struct.pack("<I", crc)
    for at in record.crc_at:
        os.pwrite(fd, packed, at)


def _hash_combine(seed, value):
    """``c10::hash_combine`` on a 64-bit size_t."""
    return seed ^ ((value + 0x9E3779B9 + (seed << 6) + (seed >> 2)) & ((1 << 64) - 1))


def _put_serialization_id(fd, found, crcs):
    """Redo the CRC half of the id with the new CRCs. The id is not read by torch.load: where
    the present id does not match this model of it (a later torch), it is left alone."""
    where = next((i for i, r in enumerate(found) if r.name.endswith("/" + _SERIALIZATION_ID)), None)
    if where is None:
        return
    record = found[where]
    old = os.pread(fd, record.size, record.data_at)
    before = after = 0
    for r in found[:where]:
        if r.described:
            before = _hash_combine(before, r.crc)
            after = _hash_combine(after, crcs.get(r.name, r.crc))
    if len(old) != 40 or old[20:] != b"%020d" % before or zlib.crc32(old) != record.crc:
        return
    new = old[:20] + b"%020d" % after
    os.pwrite(fd, new, record.data_at)
    _put_crc(fd, record, zlib.crc32(new))
