r"""Milliseconds per pre-training step of ``tf_synchro.pretrain``'s own model, on the TF backend.

    python benchmarks/bench_pretrain_step.py --flagfile=flags/pretrain_synthetic.flags \
        [--arch=resnet10] [--batch_size=16] [--stored_size=80] [--steps=400] [--chunks=4]

Builds and compiles the model exactly as ``tf_synchro.pretrain`` does
(:func:`tf_synchro.tasks.pretext.build_model`, so the
:class:`tf_synchro.models.view_augment.ViewAugment` layer, the losses, metrics and AdamW are
all in the step) from the pre-training flags, and runs ``model.fit`` on one fixed in-memory
batch of uint8 frames (``--stored_size``, the CPU dataset's 80 px) and augmentation draws,
so the figure is the step's cost without the input pipeline (``bench_input_pipeline.py``
times that). ``--data_dir`` and ``--model_dir`` are not needed.

The steps run in ``--chunks`` equal chunks after a warm-up and the fastest chunk is
reported, with all of them: on a shared 2-core machine whole chunks run about 1.5x slower
at random (other tenants), and the minimum is the stable figure. Prints one JSON line.
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Sequence

# Runnable as a script from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402

from tf_synchro import pretrain  # noqa: E402

pretrain.define_flags()
flags.DEFINE_integer("stored_size", 80, "Side of the stored frames fed to ViewAugment.")
flags.DEFINE_integer("steps", 400, "Timed steps, split into --chunks.")
flags.DEFINE_integer("chunks", 4, "Timed chunks; the fastest is reported.")
flags.DEFINE_integer("warmup", 50, "Untimed steps first (tracing, oneDNN primitive caches).")
FLAGS = flags.FLAGS


def main(argv: Sequence[str]) -> None:
    del argv
    import numpy as np
    import tensorflow as tf

    from tf_synchro import configs
    from tf_synchro.data import groups
    from tf_synchro.tasks import pretext
    from tf_synchro.models import view_augment

    # The flags as parsed: no dataset is read, so --train_subjects patterns stay unexpanded.
    config = configs.from_flags(configs.PretrainConfig)
    model = pretext.build_model(config, FLAGS.stored_size)
    if not config.pair_config().device_augment:
        raise app.UsageError("bench_pretrain_step.py times the device-augment step "
                             "(--augment_on=device)")
    batch, stored = config.optimizer.batch_size, FLAGS.stored_size
    rng = np.random.default_rng(0)
    params = np.tile(np.array([[4, 4, stored - 10, 0, 0, 1, 1]], np.float32), (batch, 1))
    params[::2, view_augment.FLIP] = 1
    grouping = config.pair_config().pair_grouping  # Frames per element, pairs scored.
    frames = groups.frames(grouping)
    scored = batch * len(groups.pairs(grouping))
    x = {f"view_{v}": rng.integers(0, 256, (batch, stored, stored, 3), dtype=np.uint8)
         for v in frames}
    x.update({f"aug_{v}": params for v in frames})
    y = {t: rng.integers(0, 2, (scored, 1)).astype(np.float32) for t in config.model.tasks}
    ds = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(ds, steps_per_epoch=FLAGS.warmup, epochs=1, verbose=0)
    per_chunk = max(1, FLAGS.steps // FLAGS.chunks)
    chunks = []
    for _ in range(FLAGS.chunks):
        start = time.perf_counter()
        model.fit(ds, steps_per_epoch=per_chunk, epochs=1, verbose=0)
        chunks.append(round(1000 * (time.perf_counter() - start) / per_chunk, 1))
    print(json.dumps({"arch": config.model.arch, "width": config.model.width,
                      "input_size": config.model.input_size, "batch_size": batch,
                      "pair_grouping": grouping, "frames_per_step": batch * len(frames),
                      "stored_size": stored, "ms_per_step": min(chunks),
                      "chunks_ms_per_step": chunks, "cpus": os.cpu_count()}))


if __name__ == "__main__":
    for name in ("data_dir", "model_dir"):  # Required by pretrain, unused here.
        FLAGS.set_default(name, "unused")
    app.run(main)
