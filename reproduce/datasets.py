"""The official Python data layers served by our dataset readers, configured from ``param_str``.

A train or test net from the official repository (or ``fcn-port net ... --split train``) names
its data as a ``Python`` layer, e.g.::

    python_param { module: "voc_layers" layer: "SBDDSegDataLayer"
                   param_str: "{'sbdd_dir': '../data/sbdd/dataset', 'seed': 1337,
                                'split': 'train', 'mean': (104.00699, 116.66877, 122.67892)}" }

The official layer runs ``eval(self.param_str)``. Here ``param_str`` is read with
``ast.literal_eval`` only: a prototxt from the internet must not run code, so anything but a
literal dict (a call, a name, an ``__import__``) is an error. The keys are the official
layers' (:data:`OFFICIAL`); required, as the official layer fails without them: the folders
and ``split``, plus ``mean`` for the two ``voc_layers`` and ``tops`` (the kind of each top) for
NYUD; optional: ``randomize`` (default True) and ``seed`` (default None). Other keys are
ignored, as there (the SIFT Flow, NYUD and PASCAL-Context layers fix their means in code and
ignore a ``mean`` key). The number of the layer's tops must be the official layer's: two, three
for SIFT Flow (data, sem, geo), one per ``tops`` entry for NYUD.

The layers served (module.layer: folder keys -> reader):

* ``voc_layers.VOCSegDataLayer``: voc_dir -> :class:`.voc.VOCSeg`
* ``voc_layers.SBDDSegDataLayer``: sbdd_dir -> :class:`.voc.SBDSeg`
* ``siftflow_layers.SIFTFlowSegDataLayer``: siftflow_dir -> :class:`.siftflow.SIFTFlowSeg`
* ``nyud_layers.NYUDSegDataLayer``: nyud_dir -> :class:`.nyud.NYUDSeg`
* ``pascalcontext_layers.PASCALContextSegDataLayer``: context_dir, voc_dir ->
  :class:`.context.ContextSeg`

Folders. The official paths are relative to the prototxt's folder (the nets live in
``fcn/voc-fcn32s/`` and the data in ``fcn/data/``), so by default a folder is ``root / path``,
``root`` being the folder the solver and its nets are in. With a data root (``fcn-port train
--data-root D``, :func:`set_data_root`) ``D`` plays the part of the official ``data/`` folder:
a relative path loses its leading ``..`` parts and one leading ``data`` part and the rest is
taken inside ``D`` (``../data/sbdd/dataset`` -> ``D/sbdd/dataset``, ``../data/pascal/VOC2011``
-> ``D/pascal/VOC2011``, ``../../data/pascal-context`` -> ``D/pascal-context``); a ``..``
further in is refused, so the folder stays inside ``D``; so is an absolute path (without a data
root it is used as it is). Ids are plain file names (:mod:`.voc`), so no file a
reader opens leaves its dataset folder.

:func:`source_factory` is the ``factory(layer_param, phase, root)`` of
:func:`fcn_port.solvers.data.register_source_factory`; :func:`register` adds it (once). The
phase does not matter: like the official layers, the split name decides the order.
"""
import ast
from pathlib import Path, PurePath
from typing import NamedTuple

from ..port.errors import CaffeFormatError, UserInputError
from ..solvers.data import register_source_factory
from .context import ContextSeg
from .nyud import KINDS as NYUD_KINDS
from .nyud import NYUDSeg
from .siftflow import SIFTFlowSeg
from .voc import RNG_KINDS, SBDSeg, VOCSeg, check_name


class Official(NamedTuple):
    """How one official data layer is served: its reader class; the param_str keys of its
    folders (the first is the reader's folder, the others its keyword arguments); its number of
    tops (0: one per entry of param_str ``tops``); whether param_str must give ``mean``."""
    cls: type
    folders: tuple
    tops: int = 2
    mean: bool = False


# (python_param.module, python_param.layer) -> how it is served
OFFICIAL = {
    ("voc_layers", "VOCSegDataLayer"): Official(VOCSeg, ("voc_dir",), 2, True),
    ("voc_layers", "SBDDSegDataLayer"): Official(SBDSeg, ("sbdd_dir",), 2, True),
    ("siftflow_layers", "SIFTFlowSegDataLayer"): Official(SIFTFlowSeg, ("siftflow_dir",), 3),
    ("nyud_layers", "NYUDSegDataLayer"): Official(NYUDSeg, ("nyud_dir",), 0),
    ("pascalcontext_layers", "PASCALContextSegDataLayer"):
        Official(ContextSeg, ("context_dir", "voc_dir"), 2),
}

_CONFIG = {"data_root": None, "rng": "py2"}
_REGISTERED = []


def set_data_root(path):
    """Take the official ``data/`` folder to be ``path`` (None: relative to the prototxt)."""
    if path is not None and not Path(path).is_dir():
        raise UserInputError(f"--data-root {path}: no such folder")
    _CONFIG["data_root"] = None if path is None else Path(path)


def set_rng(kind):
    """'py2' (default: the official runs' Python 2.7 ``randint``) or 'py3' (see :mod:`.voc`)."""
    if kind not in RNG_KINDS:
        raise UserInputError(f"rng {kind!r}: expected one of {', '.join(RNG_KINDS)}")
    _CONFIG["rng"] = kind


def register(data_root=None, rng=None):
    """Serve the official data layers from the readers in ``fcn-port train`` (idempotent);
    ``data_root`` / ``rng`` as :func:`set_data_root` / :func:`set_rng` when given."""
    if data_root is not None:
        set_data_root(data_root)
    if rng is not None:
        set_rng(rng)
    if not _REGISTERED:
        _REGISTERED.append(register_source_factory(source_factory))


def parse_param_str(text, where):
    """``param_str`` as a literal dict with string keys; ``where`` names it in errors."""
    try:
        value = ast.literal_eval(text.strip() or "{}")
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise CaffeFormatError(where[0], where[1], f"param_str is not a Python literal (only "
                               f"literals are read, nothing is run): {_short(text)}") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise CaffeFormatError(where[0], where[1], "param_str must be a dict with string keys, "
                               f"got {_short(text)}")
    return value


def _short(text, n=80):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def resolve_folder(value, root=None, data_root=None, where=("<net>", "")):
    """The folder a param_str path names (module doc): under ``root`` or ``data_root``."""
    path = PurePath(value)
    if path.is_absolute() and data_root is not None:
        raise CaffeFormatError(where[0], where[1], f"folder {value!r} is absolute; with a data "
                               f"root ({data_root}) folders are taken inside it, so give the "
                               "path relative to the official data/ folder (or no --data-root)")
    if path.is_absolute():
        return Path(path)
    if data_root is None:
        return Path(root or ".") / path
    parts = list(path.parts)
    while parts and parts[0] == "..":
        parts.pop(0)
    if parts and parts[0] == "data":
        parts.pop(0)
    if ".." in parts:
        raise CaffeFormatError(where[0], where[1], f"folder {value!r} would leave the data root "
                               f"{data_root} (no '..' after its leading ones)")
    return Path(data_root).joinpath(*parts)


def _get(params, key, types, what, where, default=...):
    if key not in params:
        if default is ...:
            raise CaffeFormatError(where[0], where[1], f"param_str has no {key!r} ({what}), "
                                   "which the official layer requires")
        return default
    value = params[key]
    if not isinstance(value, types) or isinstance(value, bool) and bool not in types:
        raise CaffeFormatError(where[0], where[1], f"param_str {key!r} is {value!r}; "
                               f"expected {what}")
    return value


def folder_keys(layer_param):
    """The param_str keys naming folders for this official data layer, the dataset's own
    first (``('voc_dir',)``; PASCAL-Context ``('context_dir', 'voc_dir')``, ``voc_dir`` holding
    VOC2010), or () when it is not one we serve."""
    py = layer_param.python_param
    entry = OFFICIAL.get((py.module, py.layer))
    return () if entry is None else entry.folders


def reader_for(layer_param, root=None, data_root=None, rng="py2", check=True, missing_ok=False,
               *, folders=None, split=None, randomize=None, mean=None):
    """The reader for an official ``Python`` data layer (a LayerParameter), or None when its
    module/layer is not one we serve. ``missing_ok``: None too when a folder cannot be found
    (param_str unreadable, no folder key, or no such folder): the layer is left to others.

    Overrides (``fcn-port eval`` and ``--eval-split``): ``folders`` maps a folder key (see
    :func:`folder_keys`) to a path used as it is; ``split`` replaces the param_str's split and
    ``randomize`` its randomize (the official rule still makes a split without 'train'
    sequential); ``mean`` (BGR) its mean (``fcn-port eval --mean-file``)."""
    py = layer_param.python_param
    entry = OFFICIAL.get((py.module, py.layer))
    if entry is None:
        return None
    where = (str(root or "."), f"layer '{layer_param.name}' ({py.module}.{py.layer})")
    try:
        params = parse_param_str(py.param_str, where)
        paths = []
        for key in entry.folders:
            if folders and key in folders:
                paths.append(Path(folders[key]))
            else:
                value = _get(params, key, str, "a folder path", where)
                paths.append(resolve_folder(value, root, data_root, where))
    except CaffeFormatError:
        if missing_ok:
            return None
        raise
    if missing_ok and not all(p.is_dir() for p in paths):
        return None
    kw = {key: path for key, path in zip(entry.folders[1:], paths[1:])}
    n_tops = entry.tops
    if entry.cls is NYUDSeg:
        kinds = _get(params, "tops", (list, tuple), f"a list of kinds from {', '.join(NYUD_KINDS)}",
                     where)
        bad = [k for k in kinds if k not in NYUD_KINDS]
        if not kinds or bad:
            raise CaffeFormatError(*where, f"param_str 'tops' is {kinds!r}; expected a list of "
                                   f"kinds from {', '.join(NYUD_KINDS)}")
        kw["kinds"], n_tops = tuple(kinds), len(kinds)
    if len(layer_param.top) != n_tops:
        what = {2: "two: data and label", 3: "three: data, semantic and geometric label"}
        raise CaffeFormatError(*where, f"has {len(layer_param.top)} tops; the official layer "
                               f"needs {what.get(n_tops, n_tops)}" +
                               (", one per param_str 'tops' entry" if not entry.tops else ""))
    if split is None:
        split = _get(params, "split", str, "a split name", where)
    split = check_name(split, *where, "split")
    if entry.mean:
        kw["mean"] = _mean(params, where) if mean is None else tuple(mean)
    if randomize is None:
        randomize = _get(params, "randomize", (bool,), "True or False", where, True)
    seed = _get(params, "seed", (int, type(None)), "an integer or None", where, None)
    return entry.cls(paths[0], split, randomize=randomize, seed=seed, rng=rng,
                     tops=tuple(layer_param.top), check=check, **kw)


def _mean(params, where):
    mean = _get(params, "mean", (tuple, list), "three numbers (B, G, R)", where)
    if len(mean) != 3 or not all(isinstance(m, (int, float)) and not isinstance(m, bool)
                                 for m in mean):
        raise CaffeFormatError(*where, f"param_str 'mean' is {mean!r}; expected three numbers "
                               "(B, G, R)")
    return tuple(mean)


def source_factory(layer_param, phase, root):
    """``register_source_factory``'s factory: a reader for the official data layers we serve,
    configured as set by :func:`set_data_root` / :func:`set_rng`; None for any other layer.

    Without a data root, a layer whose folder cannot be found (``missing_ok``) is left to the
    other sources (``--batches``), so nets trained from npz batches keep working; once a data
    root is set, that is an error. (A found folder wins over ``--batches``: solvers.data puts
    factories before the default source.)"""
    data_root = _CONFIG["data_root"]
    return reader_for(layer_param, root, data_root, _CONFIG["rng"],
                      missing_ok=data_root is None)
