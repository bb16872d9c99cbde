"""Caffe's world, nothing FCN-specific: file formats, layers, the net interpreter, coord_map,
weight surgery and parity against real Caffe (see the README's layout section)."""
from pathlib import Path

# the bundled small voc-fcn8s (official topology at 1/16 width, random weights written by real
# Caffe): inspect's and bench's default and a test fixture. convert / infer default to the
# trained demo model of models/data (fcn_port.models.verbs.DEMO_WEIGHTS).
DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "data" / "voc-fcn8s-tiny.caffemodel"
