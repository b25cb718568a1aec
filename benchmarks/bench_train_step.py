r"""Train-step throughput of the Siamese sync/flip model on the Keras JAX backend.

Issue 4 item 5b. Measures pairs/s of one optimisation step (forward, backward, AdamW update)
with the data already on the device, so the figure is the model's ceiling, not the input
pipeline's. By default (``--device_augment``) the batches are what ``tf_synchro.pretrain``'s
pipeline hands over — uint8 frames at the stored size (1.25x the input side) plus the
crop/flip/jitter draws — and the step includes the
:class:`tf_synchro.models.view_augment.ViewAugment` layer that turns them into crops on the
device. Two implementations of the same step are timed:

* ``jit``: a hand-written step, ``model.stateless_call`` + ``jax.value_and_grad`` +
  ``optimizer.stateless_apply`` under one ``jax.jit`` with donated state (the loop a JAX
  user writes; docs/DESIGN.md §6's reference figures were measured this way);
* ``train_on_batch``: Keras' own compiled train step (what ``model.fit`` runs), with
  ``--fit``.

Only JAX and Keras are needed (the GPU machines have no TensorFlow): the model and loss
modules import no TensorFlow. Run from the repository root::

    PYTHONUNBUFFERED=1 KERAS_BACKEND=jax python benchmarks/bench_train_step.py \
        --configs=256x128,16x224 --mixed_precision=bf16 --fit

CPU smoke test with a tiny model::

    KERAS_BACKEND=jax python benchmarks/bench_train_step.py --configs=16x64 --width=0.25 \
        --warmup=2 --steps=5 --fit

Each config prints one table row per implementation as it finishes, plus a JSON line
(``--json_out`` appends those lines to a file) with the device, versions and settings.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
import time

if os.environ.setdefault("KERAS_BACKEND", "jax") != "jax":
    sys.exit(f"bench_train_step.py runs on the JAX backend; KERAS_BACKEND is "
             f"{os.environ['KERAS_BACKEND']!r}")
# Runnable as a script from a checkout without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import jax  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402

from tf_synchro import configs  # noqa: E402
from tf_synchro.models import resnet, siamese, view_augment  # noqa: E402
from tf_synchro.tasks import losses  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("configs", ["256x128", "16x224"], "BATCHxSIZE pairs per step x pixels.")
flags.DEFINE_enum("arch", "resnet18", list(configs.ARCHS), "Encoder architecture.")
flags.DEFINE_float("width", 1.0, "Encoder width multiplier.")
flags.DEFINE_enum("fusion", "multiply", list(configs.FUSIONS), "Feature fusion.")
flags.DEFINE_list("tasks", ["sync", "flip"], "Heads to train.")
flags.DEFINE_integer("head_units", 256, "Hidden units of each head.")
flags.DEFINE_enum("mixed_precision", "bf16", ["bf16", "none"],
                  "bf16: mixed_bfloat16 policy (the paper model's setting); none: float32.")
flags.DEFINE_integer("warmup", 5, "Untimed steps first (compilation, autotuning).")
flags.DEFINE_integer("steps", 50, "Timed steps per config and implementation.")
flags.DEFINE_integer("n_batches", 4, "Distinct in-memory batches cycled through.")
flags.DEFINE_bool("device_augment", True, "Feed uint8 stored frames + draws and time the "
                  "ViewAugment layer in the step (as pretrain does); else float crops.")
flags.DEFINE_float("stored_scale", 1.25,
                   "Stored frame side / input side (docs/DESIGN.md §4: 160/128).")
flags.DEFINE_bool("fit", False, "Also time Keras' train_on_batch (model.fit's step).")
flags.DEFINE_string("json_out", None, "Append one JSON line per measurement to this file.")
flags.DEFINE_integer("seed", 0, "Seed for weights and data.")


def parse_config(text: str) -> tuple[int, int]:
    """``"256x128"`` -> (256, 128)."""
    try:
        batch, size = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--configs entry {text!r}: expected BATCHxSIZE, e.g. 256x128")
    return batch, size


def make_batches(n: int, batch: int, size: int, tasks, seed: int) -> list:
    """``n`` random device-resident (views, labels, masks) batches, shaped as the pipeline's."""
    rng = np.random.default_rng(seed)
    out = []
    stored = int(round(size * FLAGS.stored_scale))
    for _ in range(n):
        if FLAGS.device_augment:
            views = {}
            for key in siamese.VIEW_KEYS:
                side = rng.uniform(0.8, 1.0, batch) * stored
                params = np.stack([rng.uniform(0, stored - side), rng.uniform(0, stored - side),
                                   side, rng.integers(0, 2, batch), rng.uniform(-38, 38, batch),
                                   rng.uniform(0.8, 1.2, batch), rng.uniform(0.8, 1.2, batch)],
                                  axis=1).astype("float32")
                views[key] = jax.device_put(
                    rng.integers(0, 256, (batch, stored, stored, 3)).astype("uint8"))
                views["aug_" + key[-1]] = jax.device_put(params)
        else:
            views = {k: jax.device_put(
                rng.integers(0, 256, (batch, size, size, 3)).astype("float32"))
                for k in siamese.VIEW_KEYS}
        kind = rng.integers(0, 3, batch)  # 0 sync, 1 unsync, 2 flip: as in tf_synchro.data.pairs
        labels = {"sync": (kind == 0), "flip": (kind == 2)}
        masks = {"sync": kind != 2, "flip": kind != 1}
        out.append((views,
                    {t: jax.device_put(labels[t].astype("float32")[:, None]) for t in tasks},
                    {t: jax.device_put(masks[t].astype("float32")) for t in tasks}))
    return out


def build(size: int) -> tuple[keras.Model, keras.optimizers.Optimizer]:
    """The paper's pre-training model and optimiser (AdamW, weight decay 1e-4)."""
    # Set per build: keras.backend.clear_session() between configs resets the policy.
    keras.config.set_dtype_policy(
        "mixed_bfloat16" if FLAGS.mixed_precision == "bf16" else "float32")
    # Same initial weights for both implementations: with the same batches their final
    # losses must agree, a check that both train the same model with the same loss.
    keras.utils.set_random_seed(FLAGS.seed)
    encoder = resnet.build_encoder(FLAGS.arch, FLAGS.width, size)
    model = siamese.build_sync_flip_model(encoder, FLAGS.fusion, tuple(FLAGS.tasks),
                                          FLAGS.head_units)
    if FLAGS.device_augment:
        model = view_augment.wrap_with_augment(model, int(round(size * FLAGS.stored_scale)),
                                               size)
    return model, keras.optimizers.AdamW(learning_rate=1e-4, weight_decay=1e-4)


def time_steps(step, batches, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` calls of ``step(batch)`` after ``warmup`` untimed calls."""
    for i in range(warmup):
        jax.block_until_ready(step(batches[i % len(batches)]))
    start = time.perf_counter()
    result = None
    for i in range(steps):
        result = step(batches[i % len(batches)])
    # Dispatch is asynchronous: wait for the last step (each depends on the one before).
    jax.block_until_ready(result)
    return time.perf_counter() - start


def bench_jit(size: int, batches) -> tuple[float, float]:
    """Hand-written jitted step; returns (seconds, last loss)."""
    model, optimizer = build(size)
    optimizer.build(model.trainable_variables)
    state = {
        "trainable": [v.value for v in model.trainable_variables],
        "non_trainable": [v.value for v in model.non_trainable_variables],
        "optimizer": [v.value for v in optimizer.variables],
    }

    def loss_fn(trainable, non_trainable, views, labels, masks):
        logits, non_trainable = model.stateless_call(trainable, non_trainable, views,
                                                     training=True)
        return losses.total_masked_bce(labels, logits, masks), non_trainable

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def train_step(state, views, labels, masks):
        (loss, non_trainable), grads = grad_fn(
            state["trainable"], state["non_trainable"], views, labels, masks)
        trainable, opt_vars = optimizer.stateless_apply(
            state["optimizer"], grads, state["trainable"])
        return {"trainable": trainable, "non_trainable": non_trainable,
                "optimizer": opt_vars}, loss

    # Donating the state lets XLA update weights and optimiser slots in place.
    train_step = jax.jit(train_step, donate_argnums=0)
    holder = {"state": state, "loss": None}

    def step(batch):
        holder["state"], holder["loss"] = train_step(holder["state"], *batch)
        return holder["loss"]

    seconds = time_steps(step, batches, FLAGS.warmup, FLAGS.steps)
    return seconds, float(holder["loss"])


def bench_train_on_batch(size: int, batches) -> tuple[float, float]:
    """Keras' compiled train step (``model.fit``'s); returns (seconds, last loss).

    ``train_on_batch`` copies its logs to the host after every call, so this includes one
    device-host synchronisation per step (``model.fit`` with ``steps_per_execution=1``
    fetches its logs each step too).
    """
    model, optimizer = build(size)
    model.compile(optimizer, loss=losses.sync_flip_losses(tuple(FLAGS.tasks)), jit_compile=True)
    holder = {}

    def step(batch):
        views, labels, masks = batch
        holder["loss"] = model.train_on_batch(views, labels, sample_weight=masks,
                                              return_dict=True)["loss"]
        return holder["loss"]

    seconds = time_steps(step, batches, FLAGS.warmup, FLAGS.steps)
    return seconds, float(np.asarray(holder["loss"]))


def main(argv):
    del argv
    configs = [parse_config(c) for c in FLAGS.configs]
    policy = "mixed_bfloat16" if FLAGS.mixed_precision == "bf16" else "float32"
    device = jax.devices()[0]
    info = {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "device": f"{device.platform}:{device.device_kind}",
        "n_devices": jax.device_count(), "host_cpus": os.cpu_count(),
        "python": platform.python_version(), "jax": jax.__version__,
        "keras": keras.__version__, "arch": FLAGS.arch, "width": FLAGS.width,
        "fusion": FLAGS.fusion, "tasks": list(FLAGS.tasks), "head_units": FLAGS.head_units,
        "policy": policy, "optimizer": "AdamW", "device_augment": FLAGS.device_augment, "warmup": FLAGS.warmup, "steps": FLAGS.steps,
    }
    print(f"# {info['device']} x{info['n_devices']}, jax {jax.__version__}, "
          f"keras {keras.__version__}, {info['date']}")
    print(f"# {FLAGS.arch} width {FLAGS.width}, {FLAGS.fusion} fusion, tasks "
          f"{'+'.join(FLAGS.tasks)}, {policy}, AdamW; {FLAGS.warmup} warm-up + "
          f"{FLAGS.steps} timed steps")
    print(f"{'implementation':<16} {'batch':>5} {'px':>4} {'ms/step':>9} {'pairs/s':>10} "
          f"{'loss':>7}")
    impls = [("jit", bench_jit)] + ([("train_on_batch", bench_train_on_batch)]
                                    if FLAGS.fit else [])
    for batch, size in configs:
        batches = make_batches(FLAGS.n_batches, batch, size, FLAGS.tasks, FLAGS.seed)
        for name, fn in impls:
            seconds, loss = fn(size, batches)
            row = {**info, "implementation": name, "batch": batch, "size": size,
                   "ms_per_step": 1e3 * seconds / FLAGS.steps,
                   "pairs_per_s": batch * FLAGS.steps / seconds, "last_loss": loss}
            print(f"{name:<16} {batch:>5} {size:>4} {row['ms_per_step']:>9.1f} "
                  f"{row['pairs_per_s']:>10,.1f} {loss:>7.3f}", flush=True)
            print("JSON " + json.dumps(row), flush=True)
            if FLAGS.json_out:
                with open(FLAGS.json_out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            keras.backend.clear_session()


if __name__ == "__main__":
    app.run(main)
