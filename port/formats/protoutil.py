"""Small protobuf helpers shared by the readers: strict parsing and unknown-field checks."""
from google.protobuf import message as _message
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.unknown_fields import UnknownFieldSet

from ..errors import CaffeFormatError
from .wire import WIRE_NAMES


def unknown_fields(msg, where=""):
    """List ``(where, number, wire type, known name)`` for each field of ``msg`` its schema lacks.

    protobuf keeps such fields silently, and also files a known field that arrived with the
    wrong wire type among them, so this one walk finds both.
    """
    known = msg.DESCRIPTOR.fields_by_number
    found = [(where or msg.DESCRIPTOR.name, f.field_number, f.wire_type,
              f"{msg.DESCRIPTOR.name}.{known[f.field_number].name}" if f.field_number in known else None)
             for f in UnknownFieldSet(msg)]
    for field, value in msg.ListFields():
        if field.type != FieldDescriptor.TYPE_MESSAGE:
            continue
        for i, item in enumerate(value if field.is_repeated else [value]):
            sub = field.name
            if field.is_repeated:
                label = getattr(item, "name", "") if field.name in ("layer", "layers") else ""
                label = printable(label)
                sub += f"[{i}]" + (f" '{label}'" if label else "")
            found += unknown_fields(item, f"{where}.{sub}" if where else sub)
    return found


def describe_unknown(found, limit=5):
    parts = [f"{w}: field {n} ({WIRE_NAMES.get(t, t)})" if known is None else
             f"{w}: field {n} is {known} but arrived with the wrong wire type ({WIRE_NAMES.get(t, t)})"
             for w, n, t, known in found[:limit]]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(parts) + more


def printable(text, limit=80):
    """``text`` fit for a one-line message: control characters escaped, long names cut."""
    out = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return out if len(out) <= limit else out[:limit] + "..."


def non_utf8_strings(msg, where=""):
    """``where`` of each ``string`` field whose bytes are not UTF-8 (protobuf keeps them as
    bytes; Caffe's C++ would take them, but no name or type made of them can match anything)."""
    found = []
    for field, value in msg.ListFields():
        items = value if field.is_repeated else [value]
        label = f"{where}.{field.name}" if where else field.name
        if field.type == FieldDescriptor.TYPE_STRING:
            found += [label for v in items if isinstance(v, bytes)]
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            for i, item in enumerate(items):
                found += non_utf8_strings(item, f"{label}[{i}]" if field.is_repeated else label)
    return found


def parse_strict(cls, data, path, where="", strict=True):
    """``cls.FromString(data)``; malformed bytes or (when strict) unknown fields raise CaffeFormatError."""
    try:
        msg = cls.FromString(bytes(data))
    except (_message.DecodeError, RuntimeError, ValueError) as e:
        raise CaffeFormatError(path, where, f"not a valid {cls.DESCRIPTOR.name}: "
                                            f"{printable(e, 300)}") from None
    bad = non_utf8_strings(msg)
    if bad:
        raise CaffeFormatError(path, where, f"string fields that are not UTF-8 text: "
                               f"{', '.join(bad[:5])}; expected names and types as text")
    if strict:
        found = unknown_fields(msg)
        if found:
            raise CaffeFormatError(
                path, where,
                f"fields that {cls.DESCRIPTOR.name} does not define (BVLC master schema): "
                f"{describe_unknown(found)}; a corrupt file, or a Caffe fork's extension "
                "(from Python, strict=False reads it anyway)")
    return msg
