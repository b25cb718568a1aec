"""Figures (matplotlib) written like every other file: temporary name, then rename."""
from __future__ import annotations

import os

from tfrecords_tools.runtime import locks


def pyplot():
    """``matplotlib.pyplot`` on the file-only Agg backend (no display on servers), imported
    late so that binaries that draw nothing never load matplotlib."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def finish_axes(ax, xlabel: str) -> None:
    """The x label, a light grid and, where anything was drawn, a small legend."""
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7)


def save_figure(fig, path: str, **savefig_kwargs) -> None:
    """Saves a matplotlib figure to ``path`` under a temporary name, renames it and closes
    the figure: a killed writer never leaves a torn PNG."""
    import matplotlib.pyplot as plt
    tmp = locks.temp_path(path, os.path.splitext(path)[1])
    fig.savefig(tmp, **savefig_kwargs)
    plt.close(fig)
    os.replace(tmp, path)
