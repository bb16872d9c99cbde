"""The official FCN weight surgery (``surgery.py`` and every ``solve.py`` of the FCN repository).

:mod:`.arrays` holds the algorithms on arrays (transplant with fc->conv coercion, bilinear
interp, expand_score, the NYUD color-D conv1) and says where they differ from the official
code; :mod:`.nets` applies them to nets and files (target shapes from a prototxt, initial values
from the fillers, the recipes end to end, the result written as a caffemodel).
"""
from ..layers.fillers import bilinear_kernel
from .arrays import (ACTIONS, Entry, Report, SurgeryError, color_depth_conv1, expand_score,
                     expand_upsampling, interp, plan_transplant, transplant, upsampling_layers)
from .nets import (NOMINAL_SIZE, color_depth_transplant, expand_weights, initial_params,
                   interp_weights, nominal_input_shapes, param_shapes, resolve_net, save,
                   transplant_net)

__all__ = ["ACTIONS", "Entry", "NOMINAL_SIZE", "Report", "SurgeryError", "bilinear_kernel",
           "color_depth_conv1", "color_depth_transplant", "expand_score", "expand_upsampling",
           "expand_weights", "initial_params", "interp", "interp_weights", "nominal_input_shapes",
           "param_shapes", "plan_transplant", "resolve_net", "save", "transplant",
           "transplant_net", "upsampling_layers"]
