"""``fcn-port download NAME``: official weights and datasets (being written; issue 10)."""


def add_verbs(verbs):
    """Adds the ``download`` verb (none yet)."""
