"""Device-side pair augmentation (tf_synchro.models.view_augment) against the host pipeline."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tf_synchro.data import augment, pairs, records
from tf_synchro.models import resnet, siamese, view_augment

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _random_params(rng, n, stored, output):
    side = rng.integers(output, stored + 1, n).astype("float32")
    y0 = np.floor(rng.uniform(0, 1, n) * (stored - side + 1))
    x0 = np.floor(rng.uniform(0, 1, n) * (stored - side + 1))
    return np.stack([y0, x0, side, rng.integers(0, 2, n), rng.uniform(-30, 30, n),
                     rng.uniform(0.8, 1.2, n), rng.uniform(0.8, 1.2, n)], 1).astype("float32")


@pytest.mark.parametrize("training", [True, False])
def test_device_path_matches_host_path(tiny_dataset, training):
    """Same keys, same draws: the layer reproduces the host crops (up to uint8 rounding)."""
    files = records.dataset_files(tiny_dataset, ["S1"])
    cfg = pairs.PairConfig(pairs_per_clip=6, training=training, seed=1, deterministic=True,
                           passes=1, shuffle_buffer=0, d_min=4, d_max=30,
                           augment=augment.AugmentConfig(output_size=48))
    host = next(iter(pairs.pair_dataset(files, cfg, 12, with_metadata=True)))
    dev = next(iter(pairs.pair_dataset(files, dataclasses.replace(cfg, device_augment=True), 12,
                                       with_metadata=True)))
    np.testing.assert_array_equal(host[3]["pair_type"], dev[3]["pair_type"])
    np.testing.assert_array_equal(host[1]["sync"], dev[1]["sync"])
    assert dev[3]["flip_a"].numpy().any() or dev[3]["flip_b"].numpy().any()
    layer = view_augment.ViewAugment(48)
    for v in "ab":
        frames, params = dev[0][f"view_{v}"].numpy(), dev[0][f"aug_{v}"].numpy()
        assert frames.dtype == np.uint8 and frames.shape[1:] == (64, 64, 3)
        assert params.shape == (12, view_augment.NUM_PARAMS)
        np.testing.assert_array_equal(params[:, view_augment.FLIP],
                                      dev[3][f"flip_{v}"].numpy().astype("float32"))
        out = np.asarray(layer(frames, params))
        ref = host[0][f"view_{v}"].numpy()
        # The host rounds its resized crop to uint8 before the jitter: <= 0.5 level, through
        # saturation (|s| + |1 - s| <= 1.4), contrast (<= 1.2) and the mean (|1 - c| <= 0.2):
        # <= 0.5 * (1.2 * 1.4 + 0.2) = 0.94 level.
        assert out.shape == ref.shape == (12, 48, 48, 3)
        assert np.abs(out - ref).max() <= 0.94 + 1e-3
        assert np.abs(out - ref).mean() < 0.1


def test_flip_mirrors_the_window_and_jitter_is_mirror_invariant():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 40, 40, 3)).astype("uint8")
    params = _random_params(rng, 6, 40, 32)
    params[:, view_augment.FLIP] = 0
    mirrored = params.copy()
    mirrored[:, view_augment.FLIP] = 1
    layer = view_augment.ViewAugment(32)
    a, b = np.asarray(layer(images, params)), np.asarray(layer(images, mirrored))
    np.testing.assert_allclose(b, a[:, :, ::-1], atol=1e-3)
    # A full, unscaled window with identity jitter is the stored image itself.
    ident = np.array([[0, 0, 40, 0, 0, 1, 1]], "float32")
    np.testing.assert_allclose(np.asarray(view_augment.ViewAugment(40)(images[:1], ident)),
                               images[:1].astype("float32"), atol=1e-3)


def test_separable_sampling_equals_the_affine_warp():
    """The two matrix products sample exactly what a bilinear affine warp with edge clamping
    samples (the layer's earlier implementation), mirrored and border windows included."""
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (8, 40, 40, 3)).astype("uint8")
    params = _random_params(rng, 8, 40, 32)
    params[0, :4] = [0, 0, 40, 1]  # Full window, mirrored: samples past both edges.
    params[1, :4] = [8, 8, 32, 0]  # Unscaled window at the far corner.
    params[2, :4] = [3, 5, 33, 1]
    warp = keras.ops.image.affine_transform(
        images.astype("float32"), view_augment.crop_transforms(params, 32),
        interpolation="bilinear", fill_mode="nearest")[:, :32, :32, :]
    out = view_augment.ViewAugment(32, jitter=False)(images, params)
    np.testing.assert_allclose(np.asarray(out), np.asarray(warp), atol=2e-3)
    # Inside model.fit the frames' sides are unknown (tf.data): the same crops come out.
    import tensorflow as tf
    traced = tf.function(view_augment.ViewAugment(32, jitter=False), input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.uint8), tf.TensorSpec([None, 7], tf.float32)])
    np.testing.assert_allclose(traced(images, params).numpy(), np.asarray(out), atol=1e-4)


_JAX_SCRIPT = r"""
import json, sys, numpy as np
sys.modules["tensorflow"] = None  # The layer must not need TensorFlow: importing it fails.
import keras
from tf_synchro.models import view_augment
d = np.load(sys.argv[1])
out = keras.ops.convert_to_numpy(view_augment.ViewAugment(32)(d["images"], d["params"]))
np.save(sys.argv[2], out)
# The values go back to the test process, which asserts on them.
print(json.dumps({"backend": keras.backend.backend(), "dtype": str(out.dtype),
                  "shape": list(out.shape)}))
"""


@pytest.mark.large
def test_layer_gives_the_same_crops_on_jax(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 40, 40, 3)).astype("uint8")
    params = _random_params(rng, 8, 40, 32)
    params[0, :3] = [0, 0, 40]  # Windows touching the border.
    params[1, :3] = [8, 8, 32]
    np.savez(tmp_path / "in.npz", images=images, params=params)
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # A hang guard only: the JAX compile took over 240 s on a 2-core machine under load.
    proc = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, str(tmp_path / "in.npz"),
                           str(tmp_path / "out.npy")], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert info["backend"] == "jax"
    tf_out = np.asarray(view_augment.ViewAugment(32)(images, params))
    assert info["shape"] == list(tf_out.shape) == [8, 32, 32, 3]
    assert info["dtype"] == str(tf_out.dtype)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), tf_out, atol=1e-2)


def test_wrapped_model_shares_weights_and_round_trips(tmp_path):
    encoder = resnet.build_encoder("resnet18", 0.125, 32)
    bare = siamese.build_sync_flip_model(encoder, "multiply", ("sync", "flip"), 8)
    wrapped = view_augment.wrap_with_augment(bare, 40, 32)
    assert wrapped.get_layer("sync_flip") is bare
    assert len(wrapped.weights) == len(bare.weights)
    rng = np.random.default_rng(2)
    x = {"view_a": rng.integers(0, 256, (3, 40, 40, 3)).astype("uint8"),
         "view_b": rng.integers(0, 256, (3, 40, 40, 3)).astype("uint8"),
         "aug_a": _random_params(rng, 3, 40, 32), "aug_b": _random_params(rng, 3, 40, 32)}
    layer = view_augment.ViewAugment(32)
    ref = bare({"view_a": layer(x["view_a"], x["aug_a"]),
                "view_b": layer(x["view_b"], x["aug_b"])})
    out = wrapped(x)
    for task in ("sync", "flip"):
        np.testing.assert_allclose(np.asarray(out[task]), np.asarray(ref[task]), atol=1e-5)
    path = str(tmp_path / "wrapped.keras")
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(np.asarray(loaded(x)["sync"]), np.asarray(out["sync"]),
                               atol=1e-5)


def test_device_augment_needs_one_stored_size_at_least_the_input(tiny_dataset):
    files = records.dataset_files(tiny_dataset, ["S1"])
    cfg = pairs.PairConfig(d_min=4, d_max=30, device_augment=True,
                           augment=augment.AugmentConfig(output_size=96))
    with pytest.raises(ValueError, match=r"one stored image size >= the input size 96.*\[64\]"):
        pairs.check_records(files, cfg)
    assert pairs.check_records(files, dataclasses.replace(
        cfg, augment=augment.AugmentConfig(output_size=48)))["image_size"] == 64
