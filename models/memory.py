"""How much memory one FCN forward pass needs, and how much the machine has: ``infer``'s refusal.

The official infer.py reshapes the net to the image and runs it, whatever the size; Caffe then
fails deep inside an allocation. FCN's memory grows with the *padded* input: conv1_1 pads by
100, so every VGG16 layer up to pool1 holds ``w1`` channels of ``(H + 198) x (W + 198)``
pixels, and the upscore / crop / score maps hold the classes at about that size too. The peak
of the activations (the weights are already loaded, so not counted) is estimated as::

    4 bytes x (H + 198) x (W + 198) x (3 x w1 x towers + 1.5 x classes + 25)   [VGG16]

with ``w1`` the conv1 width and ``classes`` summed over the heads; AlexNet's conv1 (stride 4)
counts ``w1 / 16``. The coefficients were fitted to the peak RSS growth of one CPU forward
pass under ``torch.inference_mode()`` (one thread, after a warm-up pass), measured on this
machine for voc-fcn8s at 300 x 400: 85 / 153 / 280 MB for conv1 widths 8 / 32 / 64 (classes
21), 148 MB for 60 classes (width 8), and 229 MB at 600 x 800 (width 8); the formula is 6-19%
above each. For the full-size voc-fcn8s it gives 3.8 GB at 2016 x 1512 (3.9 GB of RSS was seen
for the whole process there) and 13.5 GB for a 12-megapixel phone photo (4032 x 3024).

Available memory: ``MemAvailable`` of /proc/meminfo, lowered to the cgroup's limit minus its
usage where one is set (cgroup v2 ``memory.max`` / ``memory.current``, v1
``memory.limit_in_bytes`` / ``memory.usage_in_bytes``), or psutil's where /proc is missing;
for CUDA, the device's free memory (``torch.cuda.mem_get_info``; the formula is not calibrated
there, cuDNN's workspaces come on top). None when nothing can be read: then nothing is refused.
"""
_PAD = 198  # conv1_1: kernel 3, pad 100 -> (H + 200 - 2) rows
HEADROOM = 0.75  # a size fcn-port suggests leaves a quarter of the free memory to the rest
TRAIN_FACTOR = 3  # a training step keeps the forward's activations for backward, and grads


def peak_bytes(meta, height, width):
    """Estimated peak activation memory (bytes) of one forward pass of the FCN ``meta``
    describes (a checkpoint's meta: widths, heads, towers, arch) on a ``height x width``
    input. None for a model without those fields (an interpreter checkpoint)."""
    widths, heads = meta.get("widths"), meta.get("heads")
    if not widths or not heads:
        return None
    w1 = float(widths[0]) * len(meta.get("towers") or [""])
    if meta.get("arch") == "alexnet":
        w1 /= 16
    classes = sum(int(n) for _, n in heads)
    per_pixel = 3 * w1 + 1.5 * classes + 25
    return int(4 * (height + _PAD) * (width + _PAD) * per_pixel)


def fitting_size(meta, height, width, budget):
    """The largest longer side N (>= 32) for which the downscaled input's estimate fits in
    ``budget`` bytes, or None if not even 32 does."""
    longer = max(height, width)
    lo, hi = 32, longer
    if peak_bytes(meta, *scaled_size(height, width, lo)) > budget:
        return None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if peak_bytes(meta, *scaled_size(height, width, mid)) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def scaled_size(height, width, max_size):
    """(h, w) with the longer side at most ``max_size``, the aspect kept (rounded, >= 1)."""
    longer = max(height, width)
    if max_size is None or longer <= max_size:
        return height, width
    s = max_size / longer
    return max(1, round(height * s)), max(1, round(width * s))


def _read_int(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return None if text in ("", "max") else int(text)
    except (OSError, ValueError):
        return None


def _cgroup_room():
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        lim, used = _read_int(limit), _read_int(usage)
        if lim is not None and used is not None and lim < 1 << 60:  # v1's "no limit" is huge
            return max(0, lim - used)
    return None


def _meminfo_available(path="/proc/meminfo"):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def available_bytes(device="cpu"):
    """Memory a forward pass can still take on ``device`` (bytes), or None if unknown."""
    device = str(device or "cpu")
    if device.startswith("cuda"):
        import torch

        try:
            return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError):
            return None
    known = [b for b in (_meminfo_available(), _cgroup_room()) if b is not None]
    return min(known) if known else None


def check_size(meta, height, width, *, option="--size", device="cpu", factor=1, what="a pass"):
    """Refuse (UserInputError, one line) a ``height x width`` input whose estimated peak
    (times ``factor``: :data:`TRAIN_FACTOR` for a training step) exceeds what ``device`` has
    free, naming ``option``, the estimate and the free memory; nothing is refused when either
    is unknown."""
    need, have = peak_bytes(meta, height, width), available_bytes(device)
    if need is None or have is None or need * factor <= have:
        return
    from fcn_port.port.errors import UserInputError

    raise UserInputError(f"{option} {height} {width}: {what} of {meta.get('model', 'the model')} "
                         f"needs about {gb(need * factor)} of memory at its peak (estimated), "
                         f"{gb(have)} is available on {device}; give a smaller {option}")


def gb(n):
    """Bytes as decimal gigabytes with one decimal, as messages show them."""
    return f"{n / 1e9:.1f} GB"
