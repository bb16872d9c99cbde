"""Caffe's world, nothing FCN-specific: file formats, layers, the net interpreter, coord_map,
weight surgery and parity against real Caffe (see the README's layout section)."""
from pathlib import Path

# the bundled small voc-fcn8s (official topology at 1/16 width, written by real Caffe)
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "data" / "voc-fcn8s-tiny.caffemodel"
