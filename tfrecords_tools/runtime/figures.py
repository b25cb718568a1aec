"""Figures (matplotlib) written like every other file: temporary name, then rename."""
from __future__ import annotations

import os

from tfrecords_tools.runtime import locks


def save_figure(fig, path: str, **savefig_kwargs) -> None:
    """Saves a matplotlib figure to ``path`` under a temporary name, renames it and closes
    the figure: a killed writer never leaves a torn PNG."""
    import matplotlib.pyplot as plt
    tmp = locks.temp_path(path, os.path.splitext(path)[1])
    fig.savefig(tmp, **savefig_kwargs)
    plt.close(fig)
    os.replace(tmp, path)
