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
                sub += f"[{i}]" + (f" '{label}'" if label else "")
            found += unknown_fields(item, f"{where}.{sub}" if where else sub)
    return found


def describe_unknown(found, limit=5):
    parts = [f"{w}: field {n} ({WIRE_NAMES.get(t, t)})" if known is None else
             f"{w}: field {n} is {known} but arrived with the wrong wire type ({WIRE_NAMES.get(t, t)})"
             for w, n, t, known in found[:limit]]
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return "; ".join(parts) + more


def parse_strict(cls, data, path, where="", strict=True):
    """``cls.FromString(data)``; malformed bytes or (when strict) unknown fields raise CaffeFormatError."""
    try:
        msg = cls.FromString(bytes(data))
    except (_message.DecodeError, RuntimeError, ValueError) as e:
        raise CaffeFormatError(path, where, f"not a valid {cls.DESCRIPTOR.name}: {e}") from None
    if strict:
        found = unknown_fields(msg)
        if found:
            raise CaffeFormatError(
                path, where,
                f"fields that {cls.DESCRIPTOR.name} does not define (BVLC master schema): "
                f"{describe_unknown(found)}; a corrupt file, or a Caffe fork's extension "
                "(pass strict=False / --lenient to read it anyway)")
    return msg
