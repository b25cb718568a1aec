"""The one progress line of the project's long loops (training steps, predicted frames)."""
from __future__ import annotations

from typing import TextIO


def draw(stream: TextIO, unit: str, done: int, total: int, middle: str, eta_s: float,
         tail: str = "") -> None:
    """Writes ``<unit> <done>/<total> [=====.....] <middle> ETA <eta_s>s<tail>``.

    On a terminal the line is redrawn in place (``\\r``); in a log (not a tty) each call is
    its own line. The last one (``done >= total``) ends with a newline.
    """
    frac = done / max(total, 1)
    bar = "=" * int(30 * frac) + "." * (30 - int(30 * frac))
    end = "\n" if done >= total or not stream.isatty() else "\r"
    stream.write(f"{unit} {done}/{total} [{bar}] {middle} ETA {eta_s:.0f}s{tail}{end}")
    stream.flush()
