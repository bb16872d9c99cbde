"""Caffe's solvers, emulated exactly (SGD and friends, lr policies, snapshots).

Not built yet: see the project's issue tracker.
"""
