"""``fcn-port eval --grid``: sample predictions beside their images and ground truth.

Not in the official code (its ``vis.py`` blends one prediction over one image, which
:func:`fcn_port.models.vis.overlay` reproduces); a figure for a reproduction report, like the
paper's qualitative figures: one row per image, columns image | ground truth | prediction,
labels in the VOC palette (void 255 in its cream colour), each row titled with the image id and
that image's own mean IU (score.py's formula on the image's matrix alone), and a legend below
naming the colour of every class shown. Drawn with
matplotlib's Agg backend, written whole or not at all, ``COL_INCHES * DPI`` pixels per panel
column and row, so the size is known in advance: ``(3 * COL_INCHES * DPI, rows * COL_INCHES *
DPI)``.
"""
from pathlib import Path

from ..models.vis import VOC_PALETTE, color_seg, present

COL_INCHES = 3.0
DPI = 100
LEGEND_COLUMNS = 6


def grid_size(rows):
    """The (width, height) in pixels of a grid of ``rows`` images."""
    return int(round(3 * COL_INCHES * DPI)), int(round(rows * COL_INCHES * DPI))


def draw_grid(path, samples, *, title=None, names=None):
    """``samples``: ``[(id, rgb (H, W, 3) uint8, gt (H, W), pred (H, W), mean IU)]``;
    ``names``: the class names, for the legend (indices without). Returns the path."""
    from ..port.fileio.figures import png_figure

    n = max(1, len(samples))
    shown = present(*(a for s in samples for a in (s[2], s[3])))
    legend_rows = (len(shown) + LEGEND_COLUMNS - 1) // LEGEND_COLUMNS
    rect = (0, min(0.5, 0.25 * legend_rows / (n * COL_INCHES)), 1, 1)  # ~0.25 in a legend row
    with png_figure(path, rect=rect, nrows=n, ncols=3, figsize=(3 * COL_INCHES, n * COL_INCHES),
                    dpi=DPI, squeeze=False) as (fig, axes):
        for row, (ident, rgb, gt, pred, iu) in zip(axes, samples):
            panels = (rgb, color_seg(gt), color_seg(pred))
            iu_text = "-" if iu != iu else f"{100 * iu:.1f}%"
            titles = (f"{ident}", "ground truth", f"prediction (mean IU {iu_text})")
            for ax, im, name in zip(row, panels, titles):
                ax.imshow(im, interpolation="nearest")
                ax.set_title(name, fontsize=8)
                ax.set_axis_off()
        for row in axes[len(samples):]:
            for ax in row:
                ax.set_axis_off()
        if title:
            fig.suptitle(title, fontsize=9)
        if shown:
            from matplotlib.patches import Patch

            handles = [Patch(facecolor=VOC_PALETTE[c] / 255, edgecolor="black",
                             label=names[c] if names and c < len(names) else str(c))
                       for c in shown]
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), LEGEND_COLUMNS),
                       fontsize=7, frameon=False)
    return Path(path)
