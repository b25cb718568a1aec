r"""Input pipeline throughput: pretext pairs/s per CPU core vs plain JPEG decoding.

    python -m benchmarks.bench_input_pipeline [--data_dir DIR] [--input_size 128] \
        [--threads 1] [--output result.json]

Both measurements run in the same process, alternating (``--trials`` rounds, best kept),
on the same frames' JPEG bytes:

* ``pipeline``: :func:`tf_synchro.data.pairs.pair_dataset` in training mode, pairs/s, in
  both of its modes:

  - ``device`` (what ``tf_synchro.pretrain`` uses by default): read + parse records, sample
    pairs, decode the two frames, draw the crop/flip/jitter parameters, shuffle, batch; the
    crop, resize, mirror and colour jitter then run in the train step on the accelerator
    (:class:`tf_synchro.models.view_augment.ViewAugment`, timed with the model by
    ``bench_train_step.py``);
  - ``host``: the same plus random crop/scale to ``input_size``, mirror, float conversion and
    colour jitter in tf.data;
* ``decode``: ``tf.io.decode_jpeg`` (default settings; also timed with the pipeline's
  ``INTEGER_FAST`` IDCT, and as the pipeline calls it, ``map_fn`` over a batch of JPEGs so
  that tf.data's per-element cost is paid once per batch — the strictest baseline; each
  gives its own ratio) of the same number of frames, taken
  from the same shards and held in memory, frames/s, in a tf.data map + batch of the same
  threading. A pair needs two frames, so the target is
  ``pipeline_pairs_per_s >= 0.6 * decode_frames_per_s / 2``.

``--threads=1`` confines each tf.data pipeline to one thread (private thread pool of size
1, no intra-op parallelism), so figures are per CPU core. Without ``--data_dir`` a small
synthetic dataset with 160 px crops (the stored size for 128 px training, docs/DESIGN.md
§4) is written to a temporary directory first.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Sequence

from absl import app, flags
import tensorflow as tf

from tf_synchro.data import augment, pairs, records

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Dataset (tfrecords_tools output); default: a 160 px "
                    "synthetic dataset generated into a temporary directory.")
flags.DEFINE_integer("input_size", 128, "Training crop side.")
flags.DEFINE_integer("batch_size", 64, "Pairs per batch.")
flags.DEFINE_integer("num_batches", 40, "Timed batches per trial.")
flags.DEFINE_integer("trials", 3, "Alternating rounds of both measurements (best kept).")
flags.DEFINE_integer("threads", 1, "tf.data threads per pipeline (1: per-core figures; "
                     "0: TF default).")
flags.DEFINE_integer("pairs_per_clip", 24, "Pairs drawn per parsed record.")
flags.DEFINE_list("modes", ["device", "host"], "Pipeline modes to time (device, host).")
flags.DEFINE_string("output", None, "Also write the JSON result here.")


def _options(threads: int) -> tf.data.Options:
    options = tf.data.Options()
    if threads:
        options.threading.private_threadpool_size = threads
        options.threading.max_intra_op_parallelism = 1
    return options


def _synthetic_dataset(directory: str) -> str:
    from tfrecords_tools import synthesize
    config = synthesize.SynthConfig(subjects=("S1", "S5"), actions=("Walking", "Boxing"),
                                    takes=1, num_frames=300, image_size=160, seed=0)
    synthesize.generate(directory, config, num_workers=1, log=lambda s: None)
    return directory


def _jpegs(files: Sequence[str], count: int) -> tf.Tensor:
    """``count`` JPEG strings of the dataset's frames (cycling through records if needed)."""
    spec = {"image/encoded": tf.io.RaggedFeature(tf.string, row_splits_dtype=tf.int64)}
    ds = tf.data.TFRecordDataset(list(files)).map(
        lambda s: tf.io.parse_single_example(s, spec)["image/encoded"]).unbatch()
    return tf.stack(list(ds.repeat().take(count)))


def _rate(ds: tf.data.Dataset, num_batches: int, items_per_batch: int) -> float:
    it = iter(ds)
    for _ in range(3):  # Warm-up: fill buffers, let AUTOTUNE settle.
        next(it)
    start = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    return num_batches * items_per_batch / (time.perf_counter() - start)


def run(data_dir: str, input_size: int, batch_size: int, num_batches: int, trials: int,
        threads: int, pairs_per_clip: int, modes: Sequence[str] = ("device", "host")) -> dict:
    """Measures the pipeline (each mode) and decode-only rates; returns the JSON-able result."""
    files = records.dataset_files(data_dir)
    pipelines = {}
    for mode in modes:
        pair_config = pairs.PairConfig(
            pairs_per_clip=pairs_per_clip, shuffle_buffer=512, training=True, seed=0,
            augment=augment.AugmentConfig(output_size=input_size),
            device_augment=mode == "device")
        pairs.check_records(files, pair_config)
        pipelines[mode] = pairs.pair_dataset(files, pair_config, batch_size).with_options(
            _options(threads))
    jpegs = _jpegs(files, 2 * batch_size * (num_batches + 3))

    def decode_only(dct_method: str) -> tf.data.Dataset:
        return (tf.data.Dataset.from_tensor_slices(jpegs).repeat()
                .map(lambda j: tf.io.decode_jpeg(j, channels=3, dct_method=dct_method),
                     num_parallel_calls=tf.data.AUTOTUNE)
                .batch(2 * batch_size).prefetch(tf.data.AUTOTUNE).with_options(_options(threads)))

    # "": TensorFlow's default IDCT (the target's baseline); INTEGER_FAST: the IDCT the
    # pipeline uses (augment.AugmentConfig.dct_method), reported so the two ratios show how
    # much of the margin is the faster IDCT.
    def decode_batched() -> tf.data.Dataset:
        # The strictest baseline: the pipeline's own decode call (map_fn over a batch of
        # JPEGs, INTEGER_FAST), so tf.data's per-element cost is paid once per batch.
        return (tf.data.Dataset.from_tensor_slices(jpegs).repeat().batch(2 * batch_size)
                .map(lambda js: tf.map_fn(
                    lambda j: tf.io.decode_jpeg(j, channels=3, dct_method="INTEGER_FAST"), js,
                    fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8)),
                     num_parallel_calls=tf.data.AUTOTUNE)
                .prefetch(tf.data.AUTOTUNE).with_options(_options(threads)))

    decoders = {"default": decode_only(""), "integer_fast": decode_only("INTEGER_FAST"),
                "batched": decode_batched()}
    pipe_rates = {mode: [] for mode in pipelines}
    decode_rates = {name: [] for name in decoders}
    for _ in range(trials):  # Alternate, so that load changes hit all measurements alike.
        for mode, pipeline in pipelines.items():
            pipe_rates[mode].append(_rate(pipeline, num_batches, batch_size))
        for name, decoder in decoders.items():
            decode_rates[name].append(_rate(decoder, num_batches, 2 * batch_size))
    frame_rate = max(decode_rates["default"])
    fast_rate = max(decode_rates["integer_fast"])
    batched_rate = max(decode_rates["batched"])
    stored = int(next(iter(tf.data.TFRecordDataset(files[:1]).map(
        lambda s: tf.io.parse_single_example(
            s, {"image/size": tf.io.FixedLenFeature([], tf.int64)})["image/size"]))))
    return {
        "input_size": input_size, "stored_size": stored, "batch_size": batch_size,
        "threads": threads or "default", "pairs_per_clip": pairs_per_clip,
        "decode_frames_per_s": round(frame_rate, 1),
        "decode_pairs_per_s": round(frame_rate / 2, 1),
        "modes": {mode: {"pipeline_pairs_per_s": round(max(rates), 1),
                         "ratio": round(max(rates) / (frame_rate / 2), 3),
                         "ratio_vs_integer_fast_decode": round(max(rates) / (fast_rate / 2), 3),
                         "ratio_vs_batched_decode": round(max(rates) / (batched_rate / 2), 3),
                         "trials": [round(r, 1) for r in rates]}
                  for mode, rates in pipe_rates.items()},
        "target_ratio": 0.6,
        "decode_integer_fast_frames_per_s": round(fast_rate, 1),
        "decode_batched_frames_per_s": round(batched_rate, 1),
        "decode_trials": {name: [round(r, 1) for r in rates]
                          for name, rates in decode_rates.items()},
        "data_dir": os.path.abspath(data_dir), "num_shards": len(files),
    }


def main(argv: Sequence[str]) -> None:
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = FLAGS.data_dir or _synthetic_dataset(os.path.join(tmp, "synth160"))
        result = run(data_dir, FLAGS.input_size, FLAGS.batch_size, FLAGS.num_batches,
                     FLAGS.trials, FLAGS.threads, FLAGS.pairs_per_clip, FLAGS.modes)
    text = json.dumps(result, indent=1)
    print(text)
    if FLAGS.output:
        with open(FLAGS.output, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    app.run(main)
