r"""Benchmark of the main job: wall time of each demo stage and the MPJPE ratio.

    python benchmarks/bench_demo.py --workdir /tmp/bench_demo [--scale cpu]

Runs ``python -m tf_synchro.demo`` from scratch into a fresh ``--workdir`` (refuses an
existing one, so every stage is timed) and prints one JSON line: seconds per stage (from
each stage's ``stage_done.json``), total seconds, the three metrics of both rows and the
pre-trained / random-init MPJPE ratio.
"""
import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tf_synchro import demo  # noqa: E402
from tf_synchro import experiment_lib as xl  # noqa: E402

flags.DEFINE_string("workdir", None, "Fresh directory for the run.")
flags.DEFINE_enum("scale", "cpu", sorted(xl.SCALES), "Demo scale.")
flags.mark_flag_as_required("workdir")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if os.path.exists(FLAGS.workdir):
        raise app.UsageError(f"--workdir={FLAGS.workdir} exists; the benchmark needs a fresh one")
    start = time.time()
    out = demo.run(FLAGS.workdir, FLAGS.scale, 0, "flags/table1/b_random_init_no_background.flags",
                   "flags/table1/d_ssl_no_background.flags")
    stages = {}
    for name in sorted(os.listdir(os.path.join(FLAGS.workdir, "stages"))):
        with open(os.path.join(FLAGS.workdir, "stages", name, xl.STAGE_DONE)) as f:
            stages[name.rsplit("-", 1)[0] + ":" + name.rsplit("-", 1)[1][:4]] = json.load(f)["seconds"]
    print(json.dumps({"scale": FLAGS.scale, "total_seconds": round(time.time() - start, 1),
                      "stage_seconds": stages,
                      "scratch": out["results"]["scratch"]["measured"],
                      "pretrained": out["results"]["pretrained"]["measured"],
                      "mpjpe_ratio": round(out["ratio"], 3)}))


if __name__ == "__main__":
    app.run(main)
