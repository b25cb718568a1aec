r"""Scale-out figures (issue 31): tf.data service, Beam writers, the pipeline at 224 px.

    python -m benchmarks.bench_scale_out --parts=service,pipeline224 [--output r.json]
    python -m benchmarks.bench_scale_out --parts=beam   # Beam installed (requirements-beam.txt)

Each part measures its alternatives alternating in one process (``--trials`` rounds, best
kept), so a shared machine's load hits them alike; report their ratios.

* ``service``: the pretraining pair pipeline (:func:`tf_synchro.data.pairs.pair_dataset`,
  ``device`` mode, what ``tf_synchro.pretrain`` runs), pairs/s read in-process, and read
  through a tf.data service with 1 and with 2 workers (in-process servers: the same
  ``DispatchServer``/``WorkerServer`` that ``python -m tf_synchro.data_service`` starts,
  on localhost ports, so the figures include gRPC transfer but no second machine).
* ``pipeline224``: the same pipeline with one tf.data thread (per-core figures) at 128 px
  (160 px stored crops) and at the paper's 224 px (280 px stored, the same 1.25 ratio,
  docs/DESIGN.md §4); from it the host cores one accelerator needs at 224 px, estimated
  from the 18,600 pairs/s anchor at 128 px (one H100, ResNet-18 pair model, batch 256)
  scaled by FLOPs (x (128/224)^2: convolution FLOPs grow with the pixels).
* ``beam``: ``synthesize.generate`` of the tests' tiny dataset with the local writer (one
  process) and with Apache Beam's DirectRunner (in-memory, one worker), images/s.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from typing import Sequence

from absl import app, flags

from tfrecords_tools.runtime import fileio

FLAGS = flags.FLAGS
flags.DEFINE_list("parts", ["service", "pipeline224"], "service, pipeline224, beam.")
flags.DEFINE_integer("batch_size", 64, "Pairs per batch.")
flags.DEFINE_integer("num_batches", 30, "Timed batches per trial.")
flags.DEFINE_integer("trials", 3, "Alternating rounds (best kept).")
flags.DEFINE_string("output", None, "Also write the JSON result here.")

ANCHOR_PAIRS_PER_S_128 = 18_600  # One H100, ResNet-18 pair model, 128 px, batch 256.


def _dataset(directory: str, stored: int) -> str:
    from tfrecords_tools import synthesize
    config = synthesize.SynthConfig(subjects=("S1", "S5"), actions=("Walking", "Boxing"),
                                    takes=1, num_frames=200, image_size=stored, seed=0)
    synthesize.generate(directory, config, num_workers=1, log=lambda s: None)
    return directory


def _pipeline(data_dir: str, input_size: int, batch_size: int, threads: int = 0):
    import tensorflow as tf
    from tf_synchro.data import augment, pairs, records
    files = records.dataset_files(data_dir)
    config = pairs.PairConfig(pairs_per_clip=24, shuffle_buffer=512, training=True, seed=0,
                              augment=augment.AugmentConfig(output_size=input_size),
                              device_augment=True)
    ds = pairs.pair_dataset(files, config, batch_size)
    if threads:
        options = tf.data.Options()
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(options)
    return ds


def _rate(ds, num_batches: int, items_per_batch: int) -> float:
    it = iter(ds)
    for _ in range(3):  # Warm-up: fill buffers, let AUTOTUNE settle, start the service job.
        next(it)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    return num_batches * items_per_batch / (time.perf_counter() - start)


def _best(rates: dict) -> dict:
    return {k: round(max(v), 1) for k, v in rates.items()}


def service_part(data_dir: str, batch_size: int, num_batches: int, trials: int) -> dict:
    from tf_synchro.data import service
    dispatchers = {n: service.start_dispatcher(0) for n in (1, 2)}
    workers = [service.start_worker(dispatchers[n].target, 0)
               for n in (1, 2) for _ in range(n)]
    pipelines = {"in_process": _pipeline(data_dir, 128, batch_size)}
    for n, d in dispatchers.items():
        pipelines[f"service_{n}_worker{'s' if n > 1 else ''}"] = service.distribute(
            _pipeline(data_dir, 128, batch_size), d.target)
    rates = {k: [] for k in pipelines}
    try:
        for _ in range(trials):
            for name, ds in pipelines.items():
                rates[name].append(_rate(ds, num_batches, batch_size))
    finally:
        for server in (*workers, *dispatchers.values()):
            server.stop()
    best = _best(rates)
    return {"pairs_per_s": best,
            "trials": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "ratio_to_in_process": {k: round(v / best["in_process"], 3)
                                    for k, v in best.items()}}


def pipeline224_part(dirs: dict, batch_size: int, num_batches: int, trials: int) -> dict:
    pipelines = {size: _pipeline(d, size, batch_size, threads=1) for size, d in dirs.items()}
    rates = {size: [] for size in pipelines}
    for _ in range(trials):
        for size, ds in pipelines.items():
            rates[size].append(_rate(ds, num_batches, batch_size))
    best = {size: max(r) for size, r in rates.items()}
    accel_224 = ANCHOR_PAIRS_PER_S_128 * (128 / 224) ** 2
    return {"pairs_per_s_per_core": {f"{s}px": round(v, 1) for s, v in best.items()},
            "ratio_224_to_128": round(best[224] / best[128], 3),
            "estimate": {"accelerator_pairs_per_s_224": round(accel_224),
                         "cores_per_accelerator_224": round(accel_224 / best[224], 1),
                         "cores_per_accelerator_128": round(
                             ANCHOR_PAIRS_PER_S_128 / best[128], 1)},
            "trials": {f"{s}px": [round(r, 1) for r in v] for s, v in rates.items()}}


def beam_part(trials: int) -> dict:
    from tests.testutil import TINY_ACTIONS
    from tfrecords_tools import synthesize
    config = synthesize.SynthConfig(actions=TINY_ACTIONS, takes=1, num_frames=100,
                                    image_size=64, clip_length=64, background=False, seed=0)
    rates = {"local": [], "direct": []}
    for _ in range(trials):
        for runner in rates:
            out = tempfile.mkdtemp(prefix=f"bench_{runner}_")
            try:
                start = time.perf_counter()
                manifest = synthesize.generate(out, config, runner=runner, log=lambda s: None)
                rates[runner].append(manifest["totals"]["num_images"]
                                     / (time.perf_counter() - start))
            finally:
                shutil.rmtree(out)
    best = _best(rates)
    return {"images_per_s": best, "ratio_direct_to_local": round(best["direct"] / best["local"],
                                                                 3),
            "num_images": manifest["totals"]["num_images"],
            "trials": {k: [round(r, 1) for r in v] for k, v in rates.items()}}


def main(argv: Sequence[str]) -> None:
    del argv
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        if {"service", "pipeline224"} & set(FLAGS.parts):
            dirs[128] = _dataset(os.path.join(tmp, "s160"), 160)
        if "pipeline224" in FLAGS.parts:
            dirs[224] = _dataset(os.path.join(tmp, "s280"), 280)
        if "service" in FLAGS.parts:
            result["service"] = service_part(dirs[128], FLAGS.batch_size, FLAGS.num_batches,
                                             FLAGS.trials)
        if "pipeline224" in FLAGS.parts:
            result["pipeline224"] = pipeline224_part(dirs, FLAGS.batch_size, FLAGS.num_batches,
                                                     FLAGS.trials)
        if "beam" in FLAGS.parts:
            result["beam"] = beam_part(FLAGS.trials)
    print(json.dumps(result, indent=1))
    if FLAGS.output:
        fileio.write_json_atomic(FLAGS.output, result)


if __name__ == "__main__":
    app.run(main)
