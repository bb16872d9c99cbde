"""The FCN family in PyTorch: hand-written modules whose layers are Caffe's, by name.

    from fcn_port import models
    net = models.load("voc-fcn8s.pt")              # a checkpoint from `fcn-port convert`
    net = models.load("voc-fcn8s.caffemodel")      # or straight from Caffe's weights
    net = models.voc_fcn8s()                       # the official geometry, Caffe's zero init
    net = models.build("voc-fcn8s", classes=5)     # ... for another class count

``models.OFFICIAL`` lists every official model (``voc-fcn32s`` ... ``nyud-fcn32s-color-hha``)
with its classes, means and solver values; each has a factory function named after it
(``voc_fcn8s``, ``siftflow_fcn16s``, ...) taking ``weights=`` (a caffemodel or checkpoint).
"""
from ..port.lazy import exports
from .zoo import MEANS, OFFICIAL, FCNConfig, official

# imported on first use, so that `fcn-port --help` and the prototxt verbs start without torch
_LAZY = {"ConvertError": "checkpoint", "convert": "checkpoint", "detect": "checkpoint",
         "load": "checkpoint", "convert_to_safetensors": "checkpoint", "FCN": "fcn",
         "net_param": "spec", "solver_param": "spec"}
__getattr__ = exports(__name__, _LAZY)
__all__ = ["FCN", "FCNConfig", "OFFICIAL", "MEANS", "ConvertError", "build", "config", "convert",
           "convert_to_safetensors", "deploy_net", "detect", "load", "names", "net_param",
           "official", "solver_param"]


def names():
    return list(OFFICIAL)


def build(name, *, classes=None, widths=None, fc=None, weights=None):
    """An FCN with the official geometry of ``name``; ``classes`` (int, or one per head),
    ``widths`` (five conv widths) and ``fc`` change it. ``weights``: a caffemodel or checkpoint
    of that family to load; its class count and widths are taken from it unless given here,
    and then must fit them."""
    from .checkpoint import ConvertError, load
    from .fcn import FCN

    if weights is not None and classes is None and widths is None and fc is None:
        official(name)
        return load(weights, model=name)
    model = FCN(config(name, classes=classes, widths=widths, fc=fc))
    if weights is not None:
        src = load(weights, model=name)
        want, got = model.state_dict(), src.state_dict()
        bad = [f"{k} {tuple(got[k].shape)} (needs {tuple(v.shape)})" for k, v in want.items()
               if k in got and got[k].shape != v.shape]
        if bad or want.keys() != got.keys():
            raise ConvertError(f"{weights}: does not fit {name} with classes {classes}, widths "
                               f"{widths}, fc {fc}: " + "; ".join(bad or ["other layers"]))
        model.load_state_dict(got, strict=True)
    return model.eval()


def config(name, *, classes=None, widths=None, fc=None):
    """The :class:`FCNConfig` of official model ``name`` with another class count (int, or one
    per head), five conv ``widths`` or ``fc`` width; nothing is allocated."""
    from .checkpoint import ConvertError

    cfg = official(name)
    if classes is not None:
        counts = classes if isinstance(classes, (list, tuple)) else [classes]
        if len(counts) != len(cfg.heads):
            raise ConvertError(f"{name} has {len(cfg.heads)} score head(s), got classes {classes}")
        cfg = cfg.replace(heads=tuple((h, int(n)) for (h, _), n in zip(cfg.heads, counts)))
    if widths is not None:
        cfg = cfg.replace(widths=tuple(widths))
    if fc is not None:
        cfg = cfg.replace(fc=int(fc))
    return cfg


def deploy_net(name):
    """The official deploy NetParameter of model ``name`` (what ``surgery --net NAME`` targets;
    the train/val nets have the same params)."""
    from .spec import net_param

    return net_param(official(name), "deploy")


def _factory(name):
    def make(weights=None, **kw):
        return build(name, weights=weights, **kw)
    make.__name__ = make.__qualname__ = name.replace("-", "_")
    make.__doc__ = f"The official {name} (see :func:`build`)."
    return make


for _name in OFFICIAL:
    globals()[_name.replace("-", "_")] = _factory(_name)
    __all__.append(_name.replace("-", "_"))
del _name
