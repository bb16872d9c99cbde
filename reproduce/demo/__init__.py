"""The recipe of the bundled demo model (``models/data/voc-fcn8s-demo.caffemodel``): generated
data, the official voc-fcn8s nets at reduced width, and a changed solver (``solver.prototxt``
here); :mod:`.recipe` runs it end to end."""
