r"""One plot and one table from the result files of several experiment-suite runs.

    python benchmarks/plot_suites.py --out=docs/scaling_cpu_people.png \
        --results=$(ls benchmarks/results/scaling_*.json | paste -sd,)

A scaling grid often runs in pieces: rows in separate workdirs (two streams side by side),
or on different days. Each piece's ``<suite>_<scale>.json`` (written by
``python -m tf_synchro.experiments``) holds its rows with ratios against that piece's own
random-init baseline. This draws every row that has a ``series`` and an ``x`` with
:func:`tf_synchro.suite.experiment_lib.plot_series` (one line per series; per series and seed
when the files hold more than one seed) and prints a markdown table of the points, sorted
by series and steps. Two files giving the same point (series, x, seed) are refused.
"""
import json
import os
import sys

from absl import app, flags

flags.DEFINE_list("results", [], "Suite result files (<workdir>/<suite>_<scale>.json).")
flags.DEFINE_string("out", None, "PNG to write.")
flags.mark_flag_as_required("out")
FLAGS = flags.FLAGS


def _experiment_lib():
    """Imported after the input checks: it imports TensorFlow (seconds)."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tf_synchro.suite import experiment_lib
    return experiment_lib


def load_points(paths) -> list[dict]:
    """The plotted rows of every file, each with its file's ``seed``; refuses duplicates."""
    points, seen = [], {}
    for path in paths:
        try:
            with open(path) as f:
                data = json.load(f)
            rows, seed = data["rows"], data["seed"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise app.UsageError(f"--results: {path} is not a suite result file "
                                 f"(a JSON object with 'seed' and 'rows'): {e}")
        for r in rows:
            if not r.get("series") or r.get("x") is None:
                continue
            point = (r["series"], r["x"], seed)
            if point in seen:
                raise app.UsageError(f"--results: {path} and {seen[point]} both give "
                                     f"{r['series']} at {r['x']:,.0f} steps, seed {seed}")
            seen[point] = path
            points.append(dict(r, seed=seed))
    return points


def table(points) -> str:
    """Markdown: series, seed, steps, ratios on both tests and the held-out AUCs."""
    xl = _experiment_lib()
    def pair(d, a, b):
        return f"{d[a]:.2f} / {d[b]:.2f}" if a in d and b in d else "–"

    lines = ["| series | seed | steps | ratio MPJPE / PA | unseen ratio MPJPE / PA | "
             "held-out AUC sync / flip |", "|---|---|---|---|---|---|"]
    for r in sorted(points, key=lambda r: (xl.natural_key(r["series"]), r["seed"], r["x"])):
        q, p = r.get("ratios") or {}, r.get("pretext") or {}
        lines.append(f"| {r['series']} | {r['seed']} | {r['x']:,.0f} | "
                     f"{pair(q, 'mpjpe', 'pa_mpjpe')} | "
                     f"{pair(q, 'unseen_mpjpe', 'unseen_pa_mpjpe')} | "
                     f"{pair(p, 'sync_auc', 'flip_auc')} |")
    return "\n".join(lines)


def main(argv):
    del argv
    if not FLAGS.results:
        raise app.UsageError("--results: give at least one suite result file")
    points = load_points(FLAGS.results)
    rows = table(points)
    if not _experiment_lib().plot_series(points, FLAGS.out):
        raise app.UsageError("--results: no row has a series and a step count to plot")
    print(rows)
    print(f"written {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
