"""Caffe's on-load upgrades of old net and solver definitions, in Python.

Caffe has changed its net format several times and still reads every old one: whenever it
reads a net (prototxt or caffemodel) it first rewrites the message into the current format,
in a fixed order, and only then builds the net.  The steps, each applied only if needed:

1. V0 -> V1: nets whose ``layers`` wrap a flat ``layer`` V0LayerParameter (``upgrade_v0.py``).
2. Data transformation: ``scale``, ``mean_file``, ``crop_size`` and ``mirror`` move from the
   V1 data/image_data/window_data parameters into ``transform_param``.
3. V1 -> V2: ``layers`` (V1LayerParameter, enum type) become ``layer`` (LayerParameter, type
   string); ``blobs_lr``, ``weight_decay``, ``param`` names and ``blob_share_mode`` become
   ``param`` ParamSpecs; rules, loss weights and every ``*_param`` are carried over.
4. Net inputs: ``input`` with ``input_dim`` or ``input_shape`` becomes a leading ``Input``
   layer named "input"; the net-level input fields are then cleared.
5. BatchNorm: a BatchNorm layer declaring three ``param`` specs (the old way of freezing its
   statistics) gets ``lr_mult`` and ``decay_mult`` of 0 on each, names kept.

Solvers get one upgrade: the ``solver_type`` enum becomes the ``type`` string, and Caffe
resolves ``snapshot_prefix`` against the solver file's path (``upgrade_snapshot_prefix``).

This module mirrors BVLC Caffe master's ``src/caffe/util/upgrade_proto.cpp``: same steps, same
order, same resulting message.  Where Caffe aborts (``LOG(FATAL)``/``CHECK``), or would read out
of range, we raise ``CaffeFormatError``; where Caffe logs a problem and carries on, so do we,
and the problem is one of the returned notes.
"""
import os

from google.protobuf.unknown_fields import UnknownFieldSet

from . import upgrade_v0
from ..errors import CaffeFormatError
from .proto import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

# V1 LayerType enum name -> V2 type string.
V1_LAYER_TYPES = {
    "NONE": "",
    "ABSVAL": "AbsVal",
    "ACCURACY": "Accuracy",
    "ARGMAX": "ArgMax",
    "BNLL": "BNLL",
    "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss",
    "CONVOLUTION": "Convolution",
    "DECONVOLUTION": "Deconvolution",
    "DATA": "Data",
    "DROPOUT": "Dropout",
    "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss",
    "ELTWISE": "Eltwise",
    "EXP": "Exp",
    "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data",
    "HDF5_OUTPUT": "HDF5Output",
    "HINGE_LOSS": "HingeLoss",
    "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData",
    "INFOGAIN_LOSS": "InfogainLoss",
    "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN",
    "MEMORY_DATA": "MemoryData",
    "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN",
    "POOLING": "Pooling",
    "POWER": "Power",
    "RELU": "ReLU",
    "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss",
    "SILENCE": "Silence",
    "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss",
    "SPLIT": "Split",
    "SLICE": "Slice",
    "TANH": "TanH",
    "WINDOW_DATA": "WindowData",
    "THRESHOLD": "Threshold",
}

# The V1 layer parameter messages Caffe copies, unchanged, into the V2 layer.
V1_PARAM_MESSAGES = (
    "accuracy_param", "argmax_param", "concat_param", "contrastive_loss_param",
    "convolution_param", "data_param", "dropout_param", "dummy_data_param", "eltwise_param",
    "exp_param", "hdf5_data_param", "hdf5_output_param", "hinge_loss_param", "image_data_param",
    "infogain_loss_param", "inner_product_param", "lrn_param", "memory_data_param", "mvn_param",
    "pooling_param", "power_param", "relu_param", "sigmoid_param", "softmax_param",
    "slice_param", "tanh_param", "threshold_param", "window_data_param", "transform_param",
    "loss_param",
)

# V1 data layer type -> its parameter message, and the fields that moved to transform_param.
DATA_LAYER_PARAMS = {V1.DATA: "data_param", V1.IMAGE_DATA: "image_data_param",
                     V1.WINDOW_DATA: "window_data_param"}
TRANSFORM_FIELDS = ("scale", "mean_file", "crop_size", "mirror")

# SolverParameter.SolverType enum name -> type string.
SOLVER_TYPES = {"SGD": "SGD", "NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad",
                "RMSPROP": "RMSProp", "ADADELTA": "AdaDelta", "ADAM": "Adam"}

# V1LayerParameter field numbers of its two enum fields: an enum number the schema does not
# know is parsed into the unknown fields, leaving the field unset.
_V1_TYPE_FIELD = V1.DESCRIPTOR.fields_by_name["type"].number
_V1_SHARE_MODE_FIELD = V1.DESCRIPTOR.fields_by_name["blob_share_mode"].number


def _copy(msg):
    dup = type(msg)()
    dup.CopyFrom(msg)
    return dup


def _where(kind, index, layer):
    return f"{kind}[{index}]" + (f" '{layer.name}'" if layer.name else "")


# ---- which upgrades a net needs -------------------------------------------------------------

def needs_v0_upgrade(net):
    return upgrade_v0.needs_v0_upgrade(net)


def needs_data_upgrade(net):
    for layer in net.layers:
        name = DATA_LAYER_PARAMS.get(layer.type)
        if name and any(getattr(layer, name).HasField(f) for f in TRANSFORM_FIELDS):
            return True
    return False


def needs_v1_upgrade(net):
    return len(net.layers) > 0


def needs_input_upgrade(net):
    return len(net.input) > 0


def _old_batchnorm(layer):
    # Caffe's own test is only the first line, so it re-"upgrades" forever; we skip a layer
    # whose specs already say lr_mult: 0 decay_mult: 0, which gives the same message.
    return layer.type == "BatchNorm" and len(layer.param) == 3 and not all(
        spec.HasField("lr_mult") and spec.HasField("decay_mult")
        and spec.lr_mult == 0 and spec.decay_mult == 0 for spec in layer.param)


def needs_batchnorm_upgrade(net):
    return any(_old_batchnorm(layer) for layer in net.layer)


def net_needs_upgrade(net):
    """True if ``upgrade_net`` would change ``net``."""
    return (needs_v0_upgrade(net) or needs_v1_upgrade(net) or needs_data_upgrade(net)
            or needs_input_upgrade(net) or needs_batchnorm_upgrade(net))


# ---- the upgrades ---------------------------------------------------------------------------

def upgrade_net(net, path="<net>"):
    """Upgrade a ``caffe_pb2.NetParameter`` in place to the current format, as Caffe does on load.

    Returns one short line per thing upgraded (empty if the net was current).  Raises
    ``CaffeFormatError`` where Caffe would refuse the net.
    """
    notes = []
    if needs_v0_upgrade(net):
        notes += upgrade_v0.upgrade_v0_net(net, path)
    if needs_data_upgrade(net):
        notes += _upgrade_data_transformation(net)
    if needs_v1_upgrade(net):
        notes += _upgrade_v1_net(net, path)
    if needs_input_upgrade(net):
        notes += _upgrade_input(net, path)
    if needs_batchnorm_upgrade(net):
        notes += _upgrade_batchnorm(net)
    return notes


def _upgrade_data_transformation(net):
    notes = []
    for layer in net.layers:
        name = DATA_LAYER_PARAMS.get(layer.type)
        if name is None:
            continue
        # Caffe touches both messages of every such layer, so both become present.
        params, transform = getattr(layer, name), layer.transform_param
        params.SetInParent()
        transform.SetInParent()
        moved = [f for f in TRANSFORM_FIELDS if params.HasField(f)]
        for field in moved:
            setattr(transform, field, getattr(params, field))
            params.ClearField(field)
        if moved:
            notes.append(f"{name}.{{{', '.join(moved)}}} -> transform_param on {layer.name}")
    return notes


def _upgrade_v1_net(net, path):
    if len(net.layer):
        raise CaffeFormatError(path, "layer/layers",
                               "the net has both 'layer' (current format) and 'layers' (V1) "
                               "entries; Caffe refuses to upgrade it: write every layer as "
                               "layer { type: \"Name\" ... }")
    old = [_copy(layer) for layer in net.layers]
    net.ClearField("layers")
    notes = [f"V1 layers -> V2 layer ({len(old)} layers)"]
    for i, v1 in enumerate(old):
        _upgrade_v1_layer(v1, net.layer.add(), _where("layers", i, v1), path, notes)
    return notes


def _upgrade_v1_layer(v1, layer, where, path, notes):
    unknown = {f.field_number for f in UnknownFieldSet(v1)}
    layer.bottom.extend(v1.bottom)
    layer.top.extend(v1.top)
    if v1.HasField("name"):
        layer.name = v1.name
    layer.include.extend(v1.include)
    layer.exclude.extend(v1.exclude)
    if v1.HasField("type"):
        layer.type = V1_LAYER_TYPES[V1.LayerType.Name(v1.type)]
    elif _V1_TYPE_FIELD in unknown:
        raise CaffeFormatError(path, where, "unknown V1 layer type enum value; expected one of "
                               + ", ".join(V1_LAYER_TYPES))
    if _V1_SHARE_MODE_FIELD in unknown:
        raise CaffeFormatError(path, where, "unknown blob_share_mode value; expected STRICT or "
                               "PERMISSIVE")
    layer.blobs.extend(v1.blobs)

    n_params = max(len(v1.param), len(v1.blob_share_mode), len(v1.blobs_lr),
                   len(v1.weight_decay))
    for _ in range(n_params):
        layer.param.add()
    for spec, name in zip(layer.param, v1.param):
        spec.name = name
    for spec, mode in zip(layer.param, v1.blob_share_mode):
        spec.share_mode = caffe_pb2.ParamSpec.DimCheckMode.Value(V1.DimCheckMode.Name(mode))
    for spec, lr in zip(layer.param, v1.blobs_lr):
        spec.lr_mult = lr
    for spec, decay in zip(layer.param, v1.weight_decay):
        spec.decay_mult = decay
    for old, new in (("param", "param.name"), ("blob_share_mode", "param.share_mode"),
                     ("blobs_lr", "param.lr_mult"), ("weight_decay", "param.decay_mult")):
        if len(getattr(v1, old)):
            notes.append(f"{old} -> {new} on {v1.name or where}")

    layer.loss_weight.extend(v1.loss_weight)
    for name in V1_PARAM_MESSAGES:
        if v1.HasField(name):
            getattr(layer, name).CopyFrom(getattr(v1, name))
    if v1.HasField("layer"):
        notes.append(f"{where}: V0 'layer' inside a V1 layer ignored (Caffe: upgrade failed)")


def _upgrade_input(net, path):
    inputs = list(net.input)
    has_shape, has_dim = len(net.input_shape) > 0, len(net.input_dim) > 0
    notes = []
    if has_shape or has_dim:
        if has_shape and len(net.input_shape) != len(inputs):
            raise CaffeFormatError(path, "input_shape",
                                   f"{len(inputs)} inputs need {len(inputs)} input_shape "
                                   f"entries, found {len(net.input_shape)}")
        if not has_shape and len(net.input_dim) != 4 * len(inputs):
            raise CaffeFormatError(path, "input_dim",
                                   f"{len(inputs)} inputs need {4 * len(inputs)} input_dim "
                                   f"values (4 per input), found {len(net.input_dim)}")
        input_layer = caffe_pb2.LayerParameter(name="input", type="Input", top=inputs)
        for i in range(len(inputs)):
            shape = input_layer.input_param.shape.add()
            if has_shape:
                shape.CopyFrom(net.input_shape[i])
            else:
                shape.dim.extend(net.input_dim[4 * i:4 * i + 4])
        rest = [_copy(layer) for layer in net.layer]
        net.ClearField("layer")
        net.layer.add().CopyFrom(input_layer)
        net.layer.extend(rest)
        source = "input_shape" if has_shape else "input_dim"
        notes.append(f"input/{source} -> Input layer 'input' ({', '.join(inputs)})")
    else:
        notes.append(f"input without shape dropped ({', '.join(inputs)}), as for old caffemodels")
    for field in ("input", "input_shape", "input_dim"):
        net.ClearField(field)
    return notes


def _upgrade_batchnorm(net):
    notes = []
    for layer in net.layer:
        if _old_batchnorm(layer):
            for spec in layer.param:
                spec.lr_mult = 0.0
                spec.decay_mult = 0.0
            notes.append(f"BatchNorm {layer.name}: 3 param specs -> lr_mult/decay_mult 0")
    return notes


# ---- solvers --------------------------------------------------------------------------------

def upgrade_solver(solver, path="<solver>"):
    """Upgrade a ``caffe_pb2.SolverParameter`` in place: ``solver_type`` enum -> ``type`` string.

    Returns the notes (empty if nothing was needed).  Like Caffe, refuses a solver that sets
    both fields, whatever their values.
    """
    if not solver.HasField("solver_type"):
        return []
    if solver.HasField("type"):
        raise CaffeFormatError(path, "solver_type",
                               "the old solver_type field (enum) and the new type field "
                               "(string) cannot both be specified; keep only type")
    old = caffe_pb2.SolverParameter.SolverType.Name(solver.solver_type)
    solver.type = SOLVER_TYPES[old]
    solver.ClearField("solver_type")
    return [f"solver_type {old} -> type '{solver.type}'"]


def upgrade_snapshot_prefix(solver, param_file):
    """What Caffe does to ``snapshot_prefix`` when it reads the solver file ``param_file``.

    Unset: the solver file's path without its extension.  Naming an existing directory: that
    directory joined with the solver file's stem.  Depends on the file system, so it is not
    part of ``upgrade_solver``.  Returns the notes.
    """
    param_file = os.fspath(param_file)
    name = os.path.basename(param_file)
    dot = name.rfind(".")
    ext = "" if dot < 0 or name in (".", "..") else name[dot:]  # boost::filesystem's rule
    stem = name[:len(name) - len(ext)]
    if not solver.HasField("snapshot_prefix"):
        solver.snapshot_prefix = param_file[:len(param_file) - len(ext)]
        return [f"snapshot_prefix unset -> '{solver.snapshot_prefix}'"]
    if os.path.isdir(solver.snapshot_prefix):
        solver.snapshot_prefix = os.path.join(solver.snapshot_prefix, stem)
        return [f"snapshot_prefix directory -> '{solver.snapshot_prefix}'"]
    return []
