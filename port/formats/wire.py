"""Protocol-buffer wire format, scanned and written by hand where speed matters.

protobuf's parser copies every element of a packed ``repeated float`` into a Python-side
container; for a 538 MB caffemodel that is nearly all of the cost. fcn-port therefore walks
the outer messages field by field (a few thousand fields for any real net), turns the packed
floats of each blob into a numpy view of the mapped file, and gives protobuf only the small
remainder of each message. Every length is checked against the enclosing message before it
is trusted, so a corrupt prefix can neither run past the file nor allocate memory.
"""
VARINT, I64, LEN, SGROUP, EGROUP, I32 = range(6)
WIRE_NAMES = {VARINT: "varint", I64: "64-bit", LEN: "length-delimited", I32: "32-bit",
              SGROUP: "group start", EGROUP: "group end"}


class WireError(Exception):
    """Malformed wire data at byte ``offset`` of the file; the caller adds the file name."""

    def __init__(self, offset, what):
        super().__init__(what)
        self.offset, self.what = offset, what


def read_varint(buf, pos, end):
    """Decode the varint at ``buf[pos]``; return (value, position after it)."""
    value = shift = 0
    start = pos
    while True:
        if pos >= end:
            raise WireError(start, "truncated varint (message ends inside it)")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift >= 70:
            raise WireError(start, "varint longer than 10 bytes")


def read_field(buf, pos, end):
    """Decode the field whose key starts at ``buf[pos]``.

    Returns ``(number, wire_type, key_at, start, stop, value)``: ``start:stop`` is the payload
    (for length-delimited fields, after the length prefix), ``value`` the integer of a varint
    and None otherwise. The next field starts at ``stop``.
    """
    at = pos
    key, pos = read_varint(buf, pos, end)
    number, wt = key >> 3, key & 7
    if number == 0:
        raise WireError(at, "field number 0 is not valid protobuf (corrupt, or not a protobuf file)")
    value = None
    if wt == VARINT:
        value, stop = read_varint(buf, pos, end)
    elif wt == LEN:
        n, pos = read_varint(buf, pos, end)
        stop = pos + n
        if stop > end:
            raise WireError(at, f"field {number} claims {n} bytes but only {end - pos} remain "
                                "(truncated file or corrupt length prefix)")
    elif wt in (I64, I32):
        stop = pos + (8 if wt == I64 else 4)
        if stop > end:
            raise WireError(at, f"field {number} is truncated ({WIRE_NAMES[wt]} value)")
    else:
        raise WireError(at, f"field {number} has wire type {wt} ({WIRE_NAMES.get(wt, 'invalid')}), "
                            "which Caffe files never use (corrupt, or not a Caffe file)")
    return number, wt, at, pos, stop, value


def fields(buf, pos, end):
    """Yield every field of the message in ``buf[pos:end]`` as :func:`read_field` returns it."""
    while pos < end:
        field = read_field(buf, pos, end)
        yield field
        pos = field[4]


def varint(n):
    """Encode a non-negative integer (or a negative int64, as 10 bytes) as a varint."""
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def key(number, wt):
    return varint((number << 3) | wt)


def length_delimited(number, payload_len):
    """The bytes that precede a length-delimited payload of ``payload_len`` bytes."""
    return key(number, LEN) + varint(payload_len)


def split_at(encoded, number):
    """Split a serialized message into its fields numbered below ``number`` and the rest.

    protobuf (C++ and Python alike) writes known fields in field-number order, so a payload for
    field ``number`` written between the two halves lands exactly where Caffe would put it.
    """
    for num, _, at, _, _, _ in fields(encoded, 0, len(encoded)):
        if num >= number:
            return encoded[:at], encoded[at:]
    return encoded, b""
