"""Files with no Caffe knowledge: read-only maps of inputs, all-or-nothing outputs
(:mod:`.files`), a zero-copy ``torch.save`` writer (:mod:`.torchsave`, with :mod:`.torchzip`
and :mod:`.crc32`), and hashing (:mod:`.hashing`).

Named ``fileio``, not ``io``: a package named like a standard-library module shadows it for a
script run from inside ``port/`` (the reason ``inspect.py`` became ``formats/report.py``).
"""
from ..lazy import exports

# imported on first use: .files needs numpy, and ``convert`` starts .hashing on its input
# before numpy has loaded
_LAZY = {name: "files" for name in ("HDF5_MAGIC", "FileSpan", "atomic_output", "durable_writes",
                                    "file_span", "is_hdf5", "map_file", "read_json")}
__getattr__ = exports(__name__, _LAZY)
__all__ = sorted(_LAZY)
