"""Caffe's own data layers (``Data`` on LMDB, ``ImageData``, ``HDF5Data``, ``WindowData``) as sources of
batches: :func:`source_for` gives the reader of one such layer, which ``fcn-port train`` binds
like the FCN readers and ``fcn-port parity`` replays pass by pass. :mod:`.decode` is OpenCV's
decoding and resizing, :mod:`.transform` Caffe's ``DataTransformer``, :mod:`.sources` the
layers' reading order, :mod:`.windows` R-CNN's window sampling.
"""
TYPES = ("Data", "ImageData", "HDF5Data", "WindowData")


def source_for(lp, phase="TEST", root=None, seed=None):
    """The reader of data layer ``lp`` (a LayerParameter of one of :data:`TYPES`), or None for
    another type. ``root``: the folder relative paths start from; ``seed``: the solver's
    ``random_seed`` (TRAIN-phase crops and mirrors)."""
    from . import sources, windows

    cls = {"Data": sources.LMDBData, "ImageData": sources.ImageData,
           "HDF5Data": sources.HDF5Data, "WindowData": windows.WindowData}.get(lp.type)
    return None if cls is None else cls(lp, phase, root, seed)
