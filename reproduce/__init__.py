"""The paper's experiments end to end: data readers, scoring, training scripts.

Not built yet: see the project's issue tracker.
"""
