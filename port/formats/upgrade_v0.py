"""The V0 -> V1 step of Caffe's net upgrade (see ``upgrade.py`` for the whole picture).

A V0 net is a list of ``layers`` (V1LayerParameter) each wrapping a ``layer`` V0LayerParameter
that holds everything flat: a lower-case type string ("conv", "pool", ...) and one pool of
fields (num_output, kernelsize, source, ...) whose meaning depends on that type.  Caffe turns
it into a V1 net in two passes:

1. ``padding`` layers disappear: each one's ``pad`` is moved onto the conv or pool layer that
   reads its output, and that layer is rewired to read the padding layer's input instead.
2. Every remaining layer becomes a V1 layer: the type string becomes a V1 enum, and each flat
   field is moved into the ``*_param`` sub-message that the layer type uses (table below).
   A field the layer type has no use for is dropped and reported; Caffe logs it and carries on.

Only ``name``, the layers, ``input``, ``input_dim`` and ``force_backward`` survive at net level.
"""
from ..errors import CaffeFormatError
from .proto import caffe_pb2

V1 = caffe_pb2.V1LayerParameter

# V0 type string -> V1 LayerType enum name.
V0_LAYER_TYPES = {
    "accuracy": "ACCURACY",
    "bnll": "BNLL",
    "concat": "CONCAT",
    "conv": "CONVOLUTION",
    "data": "DATA",
    "dropout": "DROPOUT",
    "euclidean_loss": "EUCLIDEAN_LOSS",
    "flatten": "FLATTEN",
    "hdf5_data": "HDF5_DATA",
    "hdf5_output": "HDF5_OUTPUT",
    "im2col": "IM2COL",
    "images": "IMAGE_DATA",
    "infogain_loss": "INFOGAIN_LOSS",
    "innerproduct": "INNER_PRODUCT",
    "lrn": "LRN",
    "multinomial_logistic_loss": "MULTINOMIAL_LOGISTIC_LOSS",
    "pool": "POOLING",
    "relu": "RELU",
    "sigmoid": "SIGMOID",
    "softmax": "SOFTMAX",
    "softmax_loss": "SOFTMAX_LOSS",
    "split": "SPLIT",
    "tanh": "TANH",
    "window_data": "WINDOW_DATA",
}

ANY = "*"  # the field moves the same way whatever the layer type

# V0 field -> {V0 layer type: "param_message.field" in the V1 layer}.  A repeated target
# (convolution_param.pad/kernel_size/stride) is appended to, a message target copied whole.
V0_FIELDS = {
    "num_output": {"conv": "convolution_param.num_output",
                   "innerproduct": "inner_product_param.num_output"},
    "biasterm": {"conv": "convolution_param.bias_term",
                 "innerproduct": "inner_product_param.bias_term"},
    "weight_filler": {"conv": "convolution_param.weight_filler",
                      "innerproduct": "inner_product_param.weight_filler"},
    "bias_filler": {"conv": "convolution_param.bias_filler",
                    "innerproduct": "inner_product_param.bias_filler"},
    "pad": {"conv": "convolution_param.pad", "pool": "pooling_param.pad"},
    "kernelsize": {"conv": "convolution_param.kernel_size", "pool": "pooling_param.kernel_size"},
    "group": {"conv": "convolution_param.group"},
    "stride": {"conv": "convolution_param.stride", "pool": "pooling_param.stride"},
    "pool": {"pool": "pooling_param.pool"},
    "dropout_ratio": {"dropout": "dropout_param.dropout_ratio"},
    "local_size": {"lrn": "lrn_param.local_size"},
    "alpha": {"lrn": "lrn_param.alpha"},
    "beta": {"lrn": "lrn_param.beta"},
    "k": {"lrn": "lrn_param.k"},
    "source": {"data": "data_param.source", "hdf5_data": "hdf5_data_param.source",
               "images": "image_data_param.source", "window_data": "window_data_param.source",
               "infogain_loss": "infogain_loss_param.source"},
    "scale": {ANY: "transform_param.scale"},
    "meanfile": {ANY: "transform_param.mean_file"},
    "batchsize": {"data": "data_param.batch_size", "hdf5_data": "hdf5_data_param.batch_size",
                  "images": "image_data_param.batch_size",
                  "window_data": "window_data_param.batch_size"},
    "cropsize": {ANY: "transform_param.crop_size"},
    "mirror": {ANY: "transform_param.mirror"},
    "rand_skip": {"data": "data_param.rand_skip", "images": "image_data_param.rand_skip"},
    "shuffle_images": {"images": "image_data_param.shuffle"},
    "new_height": {"images": "image_data_param.new_height"},
    "new_width": {"images": "image_data_param.new_width"},
    "concat_dim": {"concat": "concat_param.concat_dim"},
    "det_fg_threshold": {"window_data": "window_data_param.fg_threshold"},
    "det_bg_threshold": {"window_data": "window_data_param.bg_threshold"},
    "det_fg_fraction": {"window_data": "window_data_param.fg_fraction"},
    "det_context_pad": {"window_data": "window_data_param.context_pad"},
    "det_crop_mode": {"window_data": "window_data_param.crop_mode"},
    "hdf5_output_param": {"hdf5_output": "hdf5_output_param"},
}

# V0 fields Caffe's upgrade never reads: they are lost without a word from Caffe.
V0_IGNORED = ("new_num", "new_channels")

# Net-level fields a V0 upgrade keeps; anything else set on the net is dropped.
V0_NET_FIELDS = ("name", "layers", "input", "input_dim", "force_backward")


def needs_v0_upgrade(net):
    return any(conn.HasField("layer") for conn in net.layers)


def _where(index, conn):
    name = conn.layer.name or conn.name
    return f"layers[{index}]" + (f" '{name}'" if name else "")


def fold_padding_layers(net, path):
    """``(index, copy)`` of each of ``net.layers`` but the V0 ``padding`` layers, which are
    merged into the layer reading them."""
    producer = {blob: None for blob in net.input}  # blob -> index of the layer that last wrote it
    kept = []
    for i, conn in enumerate(net.layers):
        v0 = conn.layer
        if v0.type != "padding":
            kept.append((i, V1()))
            kept[-1][1].CopyFrom(conn)
        for j, blob in enumerate(conn.bottom):
            if blob not in producer:
                raise CaffeFormatError(path, _where(i, conn),
                                       f"bottom '{blob}' is neither a net input nor the top "
                                       "of an earlier layer")
            src = producer[blob]
            if src is None or net.layers[src].layer.type != "padding":
                continue
            pad_layer = net.layers[src]
            pad_where = _where(src, pad_layer)
            if v0.type not in ("conv", "pool"):
                raise CaffeFormatError(path, _where(i, conn),
                                       f"reads the output of padding layer {pad_where}, so it "
                                       f"must be a 'conv' or 'pool' layer, not '{v0.type}'")
            if len(conn.bottom) != 1:
                raise CaffeFormatError(path, _where(i, conn),
                                       f"reads padding layer {pad_where} so must have exactly "
                                       f"1 bottom, has {len(conn.bottom)}")
            if len(pad_layer.bottom) != 1 or len(pad_layer.top) != 1:
                raise CaffeFormatError(path, pad_where,
                                       "padding layer must have exactly 1 bottom and 1 top, has "
                                       f"{len(pad_layer.bottom)} and {len(pad_layer.top)}")
            kept[-1][1].layer.pad = pad_layer.layer.pad
            kept[-1][1].bottom[j] = pad_layer.bottom[0]
        for blob in conn.top:
            producer[blob] = i
    return kept


def _assign(msg, target, source_msg, field):
    """Move ``source_msg.field`` to the dotted ``target`` path inside ``msg``."""
    *parents, leaf = target.split(".")
    for name in parents:
        msg = getattr(msg, name)
    value = getattr(source_msg, field)
    fd = msg.DESCRIPTOR.fields_by_name[leaf]
    if fd.message_type is not None:
        getattr(msg, leaf).CopyFrom(value)
    elif fd.is_repeated:
        getattr(msg, leaf).append(value)
    elif fd.enum_type is not None:  # V0 PoolMethod -> PoolingParameter.PoolMethod, by name
        src_enum = source_msg.DESCRIPTOR.fields_by_name[field].enum_type
        setattr(msg, leaf, fd.enum_type.values_by_name[src_enum.values_by_number[value].name].number)
    else:
        setattr(msg, leaf, value)


def upgrade_v0_layer(conn, where, path, notes):
    """One V0 layer (a V1LayerParameter wrapping ``layer``) -> a fresh V1LayerParameter."""
    out = V1()
    out.bottom.extend(conn.bottom)
    out.top.extend(conn.top)
    if not conn.HasField("layer"):
        if {f.name for f, _ in conn.ListFields()} - {"bottom", "top"}:
            notes.append(f"{where}: no V0 'layer' inside; only bottom/top kept (as Caffe does)")
        return out
    v0 = conn.layer
    if v0.HasField("name"):
        out.name = v0.name
    if v0.HasField("type"):
        if v0.type not in V0_LAYER_TYPES:
            raise CaffeFormatError(path, where, f"unknown V0 layer type '{v0.type}'; expected one "
                                   f"of {', '.join(sorted(V0_LAYER_TYPES))}")
        out.type = V1.LayerType.Value(V0_LAYER_TYPES[v0.type])
    out.blobs.extend(v0.blobs)
    out.blobs_lr.extend(v0.blobs_lr)
    out.weight_decay.extend(v0.weight_decay)
    for field, targets in V0_FIELDS.items():
        if not v0.HasField(field):
            continue
        target = targets.get(ANY) or targets.get(v0.type)
        if target is None:
            notes.append(f"{where}: V0 parameter {field} means nothing for layer type "
                         f"'{v0.type}'; dropped (Caffe reports it and continues)")
            continue
        _assign(out, target, v0, field)
    for field in V0_IGNORED:
        if v0.HasField(field):
            notes.append(f"{where}: V0 parameter {field} dropped (Caffe ignores it)")
    return out


def upgrade_v0_net(net, path):
    """Rewrite ``net`` (a V0 net) in place as a V1 net; return the notes."""
    notes = []
    padding = sum(conn.layer.type == "padding" for conn in net.layers)
    layers = fold_padding_layers(net, path)
    if padding:
        notes.append(f"V0 padding layers folded into conv/pool pad ({padding} layers)")
    dropped = sorted(f.name for f, _ in net.ListFields() if f.name not in V0_NET_FIELDS)
    if dropped:
        notes.append(f"V0 net: dropped net fields {', '.join(dropped)} (as Caffe does)")
    original = caffe_pb2.NetParameter()
    original.CopyFrom(net)
    net.Clear()
    if original.HasField("name"):
        net.name = original.name
    for index, conn in layers:
        net.layers.add().CopyFrom(upgrade_v0_layer(conn, _where(index, conn), path, notes))
    net.input.extend(original.input)
    net.input_dim.extend(original.input_dim)
    if original.HasField("force_backward"):
        net.force_backward = original.force_backward
    notes.insert(0, f"V0 layers -> V1 layers ({len(layers)} layers)")
    return notes
