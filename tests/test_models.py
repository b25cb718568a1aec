"""Tests of the ResNet encoders, the Siamese sync/flip model and the masked losses/metrics.

Tiny shapes (ResNet-18 at 8 channels, 32 px) keep every training step under a second on a
2-core CPU; only the parameter-count tests build full-width models (no forward pass).
The JAX checks run in one subprocess because the Keras backend is fixed per process.
"""
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_synchro import configs
from tf_synchro.data import groups
from tf_synchro.models import resnet, siamese
from tf_synchro.tasks import losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(arch="resnet18", width=0.125, input_size=32)  # 8 channels in every stage


def _pairs(batch=8, size=32, seed=0):
    """Random pixels plus labels/masks shaped as tf_synchro.data.pairs yields them."""
    rng = np.random.default_rng(seed)
    views = {k: rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
             for k in siamese.VIEW_KEYS}
    labels = {t: rng.integers(0, 2, (batch, 1)).astype("float32") for t in siamese.TASKS}
    masks = {"sync": np.array([1, 1, 0, 1, 0, 1, 1, 0], "float32")[:batch],
             "flip": np.array([1, 0, 1, 0, 1, 1, 0, 0], "float32")[:batch]}
    return views, labels, masks


def _tiny_model(seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    return siamese.build_sync_flip_model(resnet.build_encoder(**TINY), head_units=8, **kwargs)


# ----------------------------------------------------------------------------- encoder

@pytest.mark.parametrize("arch, expected", [
    ("resnet10", 4_905_792), ("resnet18", 11_176_512), ("resnet34", 21_284_672),
    ("resnet50", 23_508_032)])
def test_trainable_params_equal_torchvision(arch, expected):
    # torchvision's count of parameters (conv weights, BN gamma/beta) without the fc layer;
    # ResNet-10 is torchvision's ResNet(BasicBlock, [1, 1, 1, 1]), counted by hand:
    # stem 9,408 + 128, stages 73,984 + 230,144 + 919,040 + 3,673,088.
    encoder = resnet.build_encoder(arch, width=1.0, input_size=64)
    trainable = sum(int(np.prod(w.shape)) for w in encoder.trainable_weights)
    assert trainable == expected
    # The only other weights are BN running mean/variance (buffers in torchvision).
    bn_params = sum(int(np.prod(w.shape)) for l in encoder.layers
                    if isinstance(l, keras.layers.BatchNormalization) for w in l.weights)
    assert encoder.count_params() == expected + bn_params // 2


@pytest.mark.parametrize("arch, width, size, dim", [
    ("resnet18", 0.125, 32, 64), ("resnet18", 0.01, 40, 8), ("resnet50", 0.125, 64, 256),
    ("resnet10", 0.25, 64, 128)])
def test_encoder_shapes_width_and_names(arch, width, size, dim):
    encoder = resnet.build_encoder(arch, width=width, input_size=size)
    out = encoder(np.zeros((2, size, size, 3), "float32"))
    assert tuple(out.shape) == (2, dim)
    assert resnet.encoder_config(encoder) == {
        "arch": arch, "width": width, "input_size": size, "feature_dim": dim}
    names = [l.name for l in encoder.layers]
    assert len(set(names)) == len(names)
    allowed = ("pixels", "normalize", "avg_pool", "stem_") + tuple(f"stage{k}_" for k in range(1, 5))
    assert all(n.startswith(allowed) for n in names), names
    for k in range(1, 5):
        assert any(n.startswith(f"stage{k}_block1_conv") for n in names)
        # ResNet-10 has one block per stage, the others at least two.
        assert any(n.startswith(f"stage{k}_block2_") for n in names) == (arch != "resnet10")


def test_encoder_normalises_raw_pixels_inside():
    encoder = resnet.build_encoder(**TINY)
    mean_pixel = np.array([0.485, 0.456, 0.406], "float32") * 255.0
    normalize = keras.Model(encoder.input, encoder.get_layer("normalize").output)
    out = np.asarray(normalize(np.broadcast_to(mean_pixel, (1, 32, 32, 3))))
    np.testing.assert_allclose(out, 0.0, atol=1e-4)
    white = np.asarray(normalize(np.full((1, 32, 32, 3), 255.0, "float32")))[0, 0, 0]
    np.testing.assert_allclose(white, (1 - np.array([0.485, 0.456, 0.406])) /
                               np.array([0.229, 0.224, 0.225]), rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(arch="resnet101"), "unknown ResNet arch"),
    (dict(width=0.0), "width"),
    (dict(input_size=16), "input_size"),
])
def test_encoder_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resnet.build_encoder(**{**TINY, **kwargs})


def test_encoder_config_rejects_other_models():
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)], name="not_an_encoder")
    with pytest.raises(ValueError, match="ResNetEncoder.*not_an_encoder"):
        resnet.encoder_config(other)


def test_encoder_save_load_keeps_config_and_outputs(tmp_path):
    keras.utils.set_random_seed(1)
    encoder = resnet.build_encoder(**TINY)
    x = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    path = str(tmp_path / "encoder.keras")
    encoder.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, resnet.ResNetEncoder)
    assert resnet.encoder_config(loaded) == resnet.encoder_config(encoder)
    np.testing.assert_allclose(loaded(x), encoder(x), rtol=1e-5, atol=1e-5)


def test_freeze_blocks_freezes_stem_and_first_stages():
    encoder = resnet.build_encoder(**TINY)
    n_weights = len(encoder.trainable_weights)
    assert resnet.freeze_blocks(encoder, 0) == []
    frozen = resnet.freeze_blocks(encoder, 3)
    assert "stem_conv" in frozen and "stage3_block2_bn2" in frozen
    assert not any(n.startswith("stage4_") for n in frozen)
    trainable = {w.path.split("/")[-2] for w in encoder.trainable_weights}
    assert trainable and all(n.startswith("stage4_") for n in trainable)
    assert len(encoder.trainable_weights) < n_weights
    resnet.freeze_blocks(encoder, 4)
    assert encoder.trainable_weights == []
    with pytest.raises(ValueError, match="0..4"):
        resnet.freeze_blocks(encoder, 5)


def test_frozen_batchnorm_runs_in_inference_mode():
    keras.utils.set_random_seed(2)
    encoder = resnet.build_encoder(**TINY)
    resnet.freeze_blocks(encoder, 3)
    x = np.random.default_rng(2).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    stem_bn, stage4_bn = encoder.get_layer("stem_bn"), encoder.get_layer("stage4_block1_bn1")
    stem_before = keras.ops.convert_to_numpy(stem_bn.moving_mean)
    stage4_before = keras.ops.convert_to_numpy(stage4_bn.moving_mean)
    # The stage-3 output in training mode equals inference mode: frozen BN uses moving stats.
    stage3 = keras.Model(encoder.input, encoder.get_layer("stage3_block2_out").output)
    np.testing.assert_allclose(stage3(x, training=True), stage3(x, training=False),
                               rtol=1e-5, atol=1e-5)
    encoder(x, training=True)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(stem_bn.moving_mean), stem_before)
    # Stage 4 is still trainable: batch statistics, moving statistics updated.
    assert not np.allclose(keras.ops.convert_to_numpy(stage4_bn.moving_mean), stage4_before)


# ----------------------------------------------------------------------------- siamese model

@pytest.mark.parametrize("tasks", [("sync", "flip"), ("sync",), ("flip",), ("flip", "sync")])
def test_sync_flip_outputs_requested_heads(tasks):
    model = _tiny_model(tasks=tasks)
    views, _, _ = _pairs(batch=3)
    out = model(views)
    assert set(out) == set(tasks)
    assert all(tuple(v.shape) == (3, 1) and v.dtype == "float32" for v in out.values())


@pytest.mark.parametrize("kwargs, match", [
    (dict(fusion="outer"), "unknown fusion"),
    (dict(tasks=()), "non-empty"),
    (dict(tasks=("sync", "pose")), "non-empty subset"),
    (dict(tasks=("sync", "sync")), "without repeats"),
    (dict(head_units=-1), "head_units"),
])
def test_sync_flip_rejects_bad_args(kwargs, match):
    with pytest.raises(ValueError, match=match):
        siamese.build_sync_flip_model(resnet.build_encoder(**TINY), **kwargs)


@pytest.mark.parametrize("fusion, combine", [
    ("multiply", lambda a, b: a * b), ("add", lambda a, b: a + b),
    ("difference", lambda a, b: a - b), ("concat", lambda a, b: np.concatenate([a, b], -1))])
def test_views_share_one_encoder_and_fuse(fusion, combine):
    keras.utils.set_random_seed(3)
    encoder = resnet.build_encoder(**TINY)
    model = siamese.build_sync_flip_model(encoder, fusion=fusion, head_units=0)
    # Shared weights: the encoder's weights appear once, plus one linear layer per head.
    dim = encoder.feature_dim * (2 if fusion == "concat" else 1)
    assert model.count_params() == encoder.count_params() + 2 * (dim + 1)
    views, _, _ = _pairs(batch=4)
    feats_a = np.asarray(encoder(views["view_a"]))
    feats_b = np.asarray(encoder(views["view_b"]))
    kernel, bias = (np.asarray(w) for w in model.get_layer("sync").weights)
    expected = combine(feats_a, feats_b) @ kernel + bias
    np.testing.assert_allclose(model(views)["sync"], expected, rtol=1e-4, atol=1e-5)


def test_sync_flip_save_load_round_trip(tmp_path):
    model = _tiny_model(seed=4, fusion="difference", tasks=("sync",))
    views, _, _ = _pairs(batch=4)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_allclose(loaded(views)["sync"], model(views)["sync"], rtol=1e-5, atol=1e-5)
    assert isinstance(loaded.get_layer("encoder"), resnet.ResNetEncoder)
    assert loaded.get_layer("fuse_difference") is not None


def test_mixed_bfloat16_trains_with_float32_logits():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = _tiny_model(seed=5)
        assert model.get_layer("encoder").get_layer("stage1_block1_conv1").compute_dtype == "bfloat16"
        views, labels, masks = _pairs()
        assert all(v.dtype == "float32" for v in model(views).values())
        model.compile(keras.optimizers.AdamW(1e-3), loss=losses.sync_flip_losses(),
                      run_eagerly=True)
        logs = model.train_on_batch(views, labels, sample_weight=masks, return_dict=True)
        assert np.isfinite(logs["loss"]) and logs["loss"] > 0
    finally:
        keras.mixed_precision.set_global_policy("float32")


# ----------------------------------------------------------------------------- losses, metrics

def _np_bce(y, x):
    p = 1 / (1 + np.exp(-x))
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_masked_bce_is_mean_over_unmasked_pairs():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(8, 1)).astype("float32")
    labels = rng.integers(0, 2, (8, 1)).astype("float32")
    mask = np.array([1, 0, 0, 1, 0, 0, 0, 1], "float32")
    expected = _np_bce(labels[:, 0], logits[:, 0])[mask == 1].mean()
    np.testing.assert_allclose(losses.masked_bce(labels, logits, mask), expected, rtol=1e-5)
    # The Keras loss for model.fit normalises the same way (not by the batch size).
    keras_loss = losses.sync_flip_losses(("sync",))["sync"]
    np.testing.assert_allclose(keras_loss(labels, logits, sample_weight=mask), expected, rtol=1e-5)
    # Stable for huge logits; an all-masked head gives 0, not NaN.
    assert np.isfinite(float(losses.masked_bce([[1.0]], [[-1e4]], [1.0])))
    assert float(losses.masked_bce(labels, logits, np.zeros(8, "float32"))) == 0.0
    assert float(keras_loss(labels, logits, sample_weight=np.zeros(8, "float32"))) == 0.0


def test_masked_pairs_have_no_influence_on_loss_or_gradient():
    rng = np.random.default_rng(7)
    logits = tf.Variable(rng.normal(size=(8, 1)).astype("float32"))
    labels = rng.integers(0, 2, (8, 1)).astype("float32")
    mask = np.array([1, 1, 0, 1, 0, 1, 1, 0], "float32")
    with tf.GradientTape() as tape:
        loss = losses.masked_bce(labels, logits, mask)
    grad = tape.gradient(loss, logits).numpy()[:, 0]
    assert np.all(grad[mask == 0] == 0) and np.all(grad[mask == 1] != 0)
    other = labels.copy()
    other[mask == 0] = 1 - other[mask == 0]
    assert float(losses.masked_bce(other, logits, mask)) == float(loss)


def test_fit_step_ignores_labels_of_masked_pairs():
    """Through model.compile/train_on_batch: changing masked labels changes nothing."""
    views, labels, masks = _pairs()
    flipped = {t: labels[t].copy() for t in labels}
    for t in flipped:
        flipped[t][masks[t] == 0] = 1 - flipped[t][masks[t] == 0]
    no_masks = {t: np.ones(8, "float32") for t in masks}
    results = []
    for y, weights in ((labels, masks), (flipped, masks), (flipped, no_masks)):
        model = _tiny_model(seed=8)
        model.compile(keras.optimizers.SGD(0.1), loss=losses.sync_flip_losses(),
                      weighted_metrics=losses.sync_flip_metrics(), run_eagerly=True)
        before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
        logs = model.train_on_batch(views, y, sample_weight=weights, return_dict=True)
        results.append((logs, [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]))
    (logs_a, w_a), (logs_b, w_b), (logs_c, w_c) = results
    assert np.isfinite(logs_a["loss"]) and not np.allclose(w_a[0], before[0])  # it trained
    assert logs_a["loss"] == pytest.approx(logs_b["loss"], rel=1e-6)
    for a, b in zip(w_a, w_b):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # Control: without the masks the changed labels do change the step.
    assert not all(np.allclose(a, c) for a, c in zip(w_a, w_c))
    assert set(logs_a) == {"loss", "sync_loss", "flip_loss", "sync_accuracy", "flip_accuracy"}


def test_weighted_accuracy_counts_only_unmasked_pairs():
    views, labels, masks = _pairs()
    model = _tiny_model(seed=9)
    model.compile(loss=losses.sync_flip_losses(),
                  weighted_metrics=losses.sync_flip_metrics(), run_eagerly=True)
    logs = model.evaluate(views, labels, sample_weight=masks, verbose=0, return_dict=True)
    logits = model(views)
    for t in siamese.TASKS:
        expected = ((np.asarray(logits[t])[:, 0] > 0) == labels[t][:, 0])[masks[t] == 1].mean()
        assert logs[f"{t}_accuracy"] == pytest.approx(expected)
        assert float(losses.masked_accuracy(labels[t], logits[t], masks[t])) == pytest.approx(expected)


def test_single_task_model_trains_one_graph_step_on_tensorflow():
    # Graph mode (tf.function), as model.fit runs it; the data still carries both heads.
    model = _tiny_model(seed=10, tasks=("sync",))
    views, labels, masks = _pairs()
    model.compile(keras.optimizers.AdamW(1e-3), loss=losses.sync_flip_losses(("sync",)),
                  weighted_metrics=losses.sync_flip_metrics(("sync",)))
    before = keras.ops.convert_to_numpy(model.get_layer("sync").kernel)
    logs = model.train_on_batch(views, {"sync": labels["sync"]},
                                sample_weight={"sync": masks["sync"]}, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert not np.allclose(keras.ops.convert_to_numpy(model.get_layer("sync").kernel), before)


# ----------------------------------------------------------------------------- JAX backend

_JAX_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np, keras, jax
    from tf_synchro.tasks import losses
    from tf_synchro.models import resnet, siamese
    # Read right after import: Keras' own train_on_batch data adapters import TensorFlow
    # lazily when it is installed (as here), which is fine; the GPU machine has none.
    tf_after_import = "tensorflow" in sys.modules
    keras.utils.set_random_seed(0)
    model = siamese.build_sync_flip_model(
        resnet.build_encoder("resnet18", 0.125, 32), head_units=8)
    rng = np.random.default_rng(0)
    views = {k: rng.uniform(0, 255, (4, 32, 32, 3)).astype("float32") for k in siamese.VIEW_KEYS}
    labels = {t: np.array([[1], [0], [1], [0]], "float32") for t in siamese.TASKS}
    masks = {"sync": np.array([1, 1, 0, 1], "float32"), "flip": np.array([1, 0, 1, 1], "float32")}
    model.compile(keras.optimizers.AdamW(1e-3), loss=losses.sync_flip_losses(),
                  weighted_metrics=losses.sync_flip_metrics())
    before = keras.ops.convert_to_numpy(model.get_layer("sync").kernel)
    logs = model.train_on_batch(views, labels, sample_weight=masks, return_dict=True)
    after = keras.ops.convert_to_numpy(model.get_layer("sync").kernel)
    grad = np.asarray(jax.grad(lambda x: losses.masked_bce(labels["sync"], x, masks["sync"]))(
        np.ones((4, 1), "float32")))
    # The values go back to the test process, which asserts on them.
    print(json.dumps({"backend": keras.backend.backend(), "tf_after_import": tf_after_import,
                      "loss": float(logs["loss"]),
                      "kernel_change": float(np.abs(after - before).max()),
                      "grad": grad.ravel().tolist(), "sync_mask": masks["sync"].tolist()}))
""")


@pytest.mark.large
def test_trains_one_step_on_jax_backend_without_tensorflow():
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": REPO + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # A hang guard only: the JAX compile took over 240 s on a 2-core machine under load.
    proc = subprocess.run([sys.executable, "-c", _JAX_SCRIPT], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["backend"] == "jax"
    assert not out["tf_after_import"], "model modules must not import TensorFlow"
    assert np.isfinite(out["loss"]) and out["loss"] > 0
    assert out["kernel_change"] > 0  # One step moved the sync head.
    # The masked loss sends no gradient through masked-out pairs, and some through the rest.
    grad, mask = np.array(out["grad"]), np.array(out["sync_mask"])
    assert np.all(grad[mask == 0] == 0) and np.all(grad[mask == 1] != 0)


@pytest.mark.parametrize("grouping", ["quads", "hexes"])
def test_group_model_scores_its_pairs_with_the_shared_weights(grouping):
    """build_group_model reuses the two-view model's encoder and heads: in inference its
    output blocks are the two-view model's logits of the pairs in groups.pairs, and
    pair_model_of gives back a two-view model with the same weights."""
    model = _tiny_model(fusion="difference")
    group = siamese.build_group_model(model, grouping)
    assert len(group.weights) == len(model.weights)
    keys = groups.view_keys(grouping)
    rng = np.random.default_rng(0)
    frames = {k: rng.uniform(0, 255, (3, TINY["input_size"], TINY["input_size"], 3)
                             ).astype("float32") for k in keys}
    out = group(frames, training=False)
    again = siamese.pair_model_of(group)
    for block, (i, j) in enumerate(groups.pairs(grouping)):
        pair = {"view_a": frames[keys[i]], "view_b": frames[keys[j]]}
        for m in (model, again):
            expected = m(pair, training=False)
            for task in siamese.TASKS:
                np.testing.assert_allclose(out[task][3 * block:3 * block + 3], expected[task],
                                           rtol=1e-4, atol=1e-4)
