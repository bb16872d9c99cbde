"""Weight surgery: the kernels and transplants of the official FCN recipe."""
import torch


def bilinear_kernel(size):
    """The official FCN upsampling kernel (``surgery.upsample_filt``; also Caffe's ``bilinear``
    filler): a separable tent of ``factor = (size + 1) // 2`` centred at ``factor - 1`` for odd
    sizes and ``factor - 0.5`` for even ones. Returns a (size, size) float32 tensor."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor
    return (ramp[:, None] * ramp[None, :]).float()
