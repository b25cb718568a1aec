r"""Runs a suite of the paper's experiments and writes its table beside the paper's numbers.

    python -m tf_synchro.experiments --suite table1 --workdir /tmp/tf_synchro_table1 \
        [--scale cpu|paper] [--rows a,b,d]
    python -m tf_synchro.experiments --suite scaling --workdir /tmp/tf_synchro_scaling

A suite is a folder of row flagfiles (``flags/table1``, ``flags/table2``, or any path), or
one defined in code (``scaling``: :func:`tf_synchro.suite.experiment_lib.scaling_rows`).
Rows that share a stage share its run (e.g. Table 1's d, g, k, m are one pre-training
and one fine-tune at the paper scale; d, g, j, m at the cpu scale). Finished stages are
reused, an interrupted one resumes, so re-running the same command continues a partly
finished suite. Writes ``<suite>_<scale>.md`` and
``.json`` in the workdir, updated after every row. Tables quote the protocol's mean over
actions, the unseen-motion test beside the standard one when the dataset has it, each
pre-training's held-out pretext ROC areas, and ratios against a row's ``--baseline`` row
(run first). Rows with ``--series`` and ``--x`` are also plotted (``<suite>_<scale>.png``):
the ``scaling`` suite plots the ratios against pre-training steps, a line per count of
unlabelled people.
"""
from __future__ import annotations

import os
import time
from typing import Sequence

from absl import app

from tf_synchro import configs
from tf_synchro.suite import experiment_lib as xl
from tfrecords_tools.runtime import cli, fileio, locks

BINARY = "tf_synchro.experiments"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.ExperimentsConfig` (defined
    only when it runs, so the library imports cleanly)."""
    configs.define_flags(configs.ExperimentsConfig, flag_values, binary=BINARY)


def run_suite(suite: str, workdir: str, scale: str, rows: Sequence[str] = (), seed: int = 0,
              log=print, deterministic: bool = False) -> list[dict]:
    """Runs (or resumes) the rows of ``suite``; returns their result records."""
    all_rows = xl.suite_rows(suite)
    unknown = sorted(set(rows) - {r.row for r in all_rows})
    if unknown:
        raise app.UsageError(f"--rows: {unknown} not in suite {suite} "
                             f"(rows: {[r.row for r in all_rows]})")
    selected = [r for r in all_rows if not rows or r.row in rows]
    # Baseline rows run first, so every ratio can be filled in as soon as its row finishes.
    wanted = {r.baseline for r in selected if r.baseline}
    missing = sorted(wanted - {r.row for r in all_rows})
    if missing:
        raise app.UsageError(f"suite {suite}: baseline rows {missing} are not in the suite")
    selected = ([r for r in all_rows if r.row in wanted]
                + [r for r in selected if r.row not in wanted])
    name = os.path.basename(os.path.normpath(suite))
    base = os.path.join(workdir, f"{name}_{scale}")
    os.makedirs(workdir, exist_ok=True)
    results = []
    start = time.time()
    for i, row in enumerate(selected, 1):
        log(f"\n##### row {row.row} ({i}/{len(selected)}): {row.title} — elapsed "
            f"{time.time() - start:.0f}s")
        t0 = time.time()
        result = xl.run_row(xl.plan_row(row, scale, seed, deterministic), workdir, log)
        result["seconds_this_run"] = round(time.time() - t0, 1)
        results = xl.add_ratios(results + [result])
        # Written after every row: a partly finished suite still has a table (and plot).
        fileio.write_json_atomic(base + ".json", {"suite": name, "scale": scale,
                                                      "seed": seed, "deterministic": deterministic,
                                                      "rows": results})
        table = xl.format_table(results, f"{name}, scale={scale}, seed={seed}"
                                         f"{', deterministic' if deterministic else ''} (mm, "
                                         f"mean over actions; test S9/S11)")
        tmp = locks.temp_path(base + ".md")
        with open(tmp, "w") as f:
            f.write(table)
        os.replace(tmp, base + ".md")
        xl.plot_series(results, base + ".png")
    log("\n" + xl.format_table(results, f"{name}, scale={scale}"))
    log(f"written {base}.md and {base}.json" + (f" and {base}.png"
                                                if os.path.exists(base + ".png") else ""))
    return results


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    configs.warn_deprecated(BINARY)
    config = configs.from_flags(configs.ExperimentsConfig)
    with xl.suite_workdir(config.workdir):
        run_suite(config.suite, config.workdir, config.scale, config.rows, config.seed,
                  deterministic=config.deterministic)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
