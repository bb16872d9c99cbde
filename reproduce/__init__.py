"""The paper's experiments end to end (issue 10); more modules come with the readers and eval.

``score``: score.py's confusion matrix, metrics and heat map; ``verbs``: ``fcn-port score``.
"""
