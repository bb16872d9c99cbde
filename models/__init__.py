"""Hand-written PyTorch FCN modules (VGG16 FCN-32s/16s/8s, AlexNet, dataset variants).

Not built yet: see the project's issue tracker (issue 4).
"""
