"""PNG figures written whole: the one matplotlib set-up behind every plot fcn-port draws
(training curves, evaluation metrics, confusion matrices, prediction grids, the report).

matplotlib runs on its Agg backend, so no display is needed, and is imported only when a plot
is drawn. The PNG goes through :func:`~.files.atomic_output`: a failed plot leaves no file and
the previous one intact.
"""
from contextlib import contextmanager
from pathlib import Path

from .files import atomic_output


@contextmanager
def png_figure(path, rect=None, **subplots):
    """``with png_figure(path, figsize=(7, 4), dpi=100) as (fig, axes):`` draw on
    ``plt.subplots(**subplots)``. When the block ends without an error the figure is laid out
    (``tight_layout``, within ``rect`` (left, bottom, right, top) when given: room for a
    figure legend) and written to the PNG ``path`` at the figure's dpi, its folder made if
    needed; the figure is closed either way."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout(rect=rect)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as f:
            fig.savefig(f, format="png", dpi=fig.dpi)
    finally:
        plt.close(fig)
