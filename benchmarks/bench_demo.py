r"""Benchmark of the main job: wall time of each demo stage and the MPJPE ratio.

    python benchmarks/bench_demo.py --workdir /tmp/bench_demo [--scale cpu]

Runs ``python -m tf_synchro.demo`` from scratch into a fresh ``--workdir`` (refuses an
existing one, so every stage is timed) and prints one JSON line: seconds per stage (from
each stage's ``stage_done.json``), total seconds, the three metrics (means over actions) of
every row on the standard and the unseen-motion test, the held-out pretext figures and
every headline ratio (pre-trained / each random-init baseline).
"""
import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_synchro import demo  # noqa: E402
from tf_synchro.suite import experiment_lib as xl  # noqa: E402

flags.DEFINE_string("workdir", None, "Fresh directory for the run.")
flags.DEFINE_enum("scale", "cpu", sorted(xl.SCALES), "Demo scale.")
flags.DEFINE_integer("seed", 0, "Seed of pre-training and fine-tuning.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if os.path.exists(FLAGS.workdir):
        raise app.UsageError(f"--workdir={FLAGS.workdir} exists; the benchmark needs a fresh one")
    start = time.time()
    out = demo.run(FLAGS.workdir, FLAGS.scale, FLAGS.seed,
                   "flags/table1/b_random_init_no_background.flags",
                   "flags/table1/d_ssl_no_background.flags",
                   scratch_trainable_row="flags/baselines/b0_random_init_all_trainable.flags")
    stages = {}
    for name in sorted(os.listdir(os.path.join(FLAGS.workdir, "stages"))):
        with open(os.path.join(FLAGS.workdir, "stages", name, xl.STAGE_DONE)) as f:
            stages[name.rsplit("-", 1)[0] + ":" + name.rsplit("-", 1)[1][:4]] = json.load(f)["seconds"]
    rows = {k: {"standard": [round(v, 1) for v in r["measured"]],
                "unseen": [round(v, 1) for v in r["unseen"]] if r.get("unseen") else None}
            for k, r in out["results"].items()}
    print(json.dumps({"scale": FLAGS.scale, "seed": FLAGS.seed,
                      "total_seconds": round(time.time() - start, 1),
                      "stage_seconds": stages, "rows": rows,
                      "pretext": out["results"]["pretrained"]["pretext"],
                      "ratios": {k: round(v, 3) for k, v in out["ratios"].items()}}))


if __name__ == "__main__":
    app.run(main)
