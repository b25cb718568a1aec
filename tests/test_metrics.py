"""Pose metrics: properties, and agreement with an independent numpy reference.

The reference for PA-MPJPE uses Horn's quaternion method (eigenvector of a 4x4 matrix),
not an SVD, so it shares no code path with :mod:`tf_synchro.tasks.metrics`; quaternions only
describe proper rotations, so it also checks the det = +1 restriction.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tf_synchro.tasks import metrics
from tfrecords_tools import cameras

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ----------------------------------------------------------------------------- numpy reference


def _ref_root(p):
    return p - p[..., :1, :]


def ref_mpjpe(pred, gt):
    return np.linalg.norm(_ref_root(pred) - _ref_root(gt), axis=-1).mean(-1)


def ref_n_mpjpe(pred, gt):
    out = []
    for p, g in zip(_ref_root(pred), _ref_root(gt)):
        s = (p * g).sum() / (p * p).sum()
        out.append(np.linalg.norm(s * p - g, axis=-1).mean())
    return np.array(out)


def _horn_rotation(x, y):
    """Proper rotation R maximising sum_j y_j . R x_j (x, y centred [J, 3]); Horn 1987."""
    m = x.T @ y  # m[a, b] = sum_j x_ja y_jb
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = m
    n = np.array([
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ])
    w, v = np.linalg.eigh(n)
    return cameras.quaternion_to_matrix(v[:, np.argmax(w)])


def ref_pa_mpjpe(pred, gt):
    out = []
    for p, g in zip(pred.astype(np.float64), gt.astype(np.float64)):
        x, y = p - p.mean(0), g - g.mean(0)
        r = _horn_rotation(x, y)
        rx = x @ r.T
        s = (y * rx).sum() / (x * x).sum()
        out.append(np.linalg.norm(s * rx - y, axis=-1).mean())
    return np.array(out)


# ----------------------------------------------------------------------------- fixtures


def _random_rotation(rng):
    q = rng.normal(size=4)
    return cameras.quaternion_to_matrix(q)


@pytest.fixture
def poses():
    rng = np.random.default_rng(0)
    gt = rng.normal(scale=300.0, size=(6, 17, 3)).astype(np.float32)
    pred = (gt + rng.normal(scale=60.0, size=gt.shape)).astype(np.float32)
    return pred, gt


def _np(x):
    return np.asarray(x)


# ----------------------------------------------------------------------------- tests


def test_horn_reference_recovers_rotation():
    # Guards the reference itself: it must undo a known rotation exactly.
    rng = np.random.default_rng(1)
    x = rng.normal(size=(17, 3))
    x -= x.mean(0)
    r = _random_rotation(rng)
    np.testing.assert_allclose(_horn_rotation(x, x @ r.T), r, atol=1e-8)


@pytest.mark.parametrize("fn", [metrics.mpjpe_per_pose, metrics.n_mpjpe_per_pose,
                                metrics.pa_mpjpe_per_pose])
def test_zero_for_perfect_prediction(poses, fn):
    _, gt = poses
    # A global offset does not matter either: all metrics are root-relative.
    np.testing.assert_allclose(_np(fn(gt + 123.0, gt)), 0.0, atol=1e-2)


def test_agrees_with_numpy_reference(poses):
    pred, gt = poses
    np.testing.assert_allclose(_np(metrics.mpjpe_per_pose(pred, gt)), ref_mpjpe(pred, gt),
                               rtol=1e-5)
    np.testing.assert_allclose(_np(metrics.n_mpjpe_per_pose(pred, gt)), ref_n_mpjpe(pred, gt),
                               rtol=1e-4)
    np.testing.assert_allclose(_np(metrics.pa_mpjpe_per_pose(pred, gt)), ref_pa_mpjpe(pred, gt),
                               rtol=1e-3)
    # Alignment can only help in the least-squares sense: the three differ on noisy poses.
    assert np.all(_np(metrics.pa_mpjpe_per_pose(pred, gt)) < _np(metrics.mpjpe_per_pose(pred, gt)))


def test_pa_mpjpe_invariant_to_similarity_of_prediction(poses):
    pred, gt = poses
    rng = np.random.default_rng(2)
    moved = np.stack([2.7 * p @ _random_rotation(rng).T + rng.normal(scale=500.0, size=3)
                      for p in pred]).astype(np.float32)
    base = _np(metrics.pa_mpjpe_per_pose(pred, gt))
    np.testing.assert_allclose(_np(metrics.pa_mpjpe_per_pose(moved, gt)), base, rtol=1e-3)
    # ... while MPJPE and N-MPJPE do see the rotation.
    assert np.all(_np(metrics.mpjpe_per_pose(moved, gt)) > base * 1.5)
    assert np.all(_np(metrics.n_mpjpe_per_pose(moved, gt)) > base * 1.5)


def test_n_mpjpe_invariant_to_scale_of_prediction(poses):
    pred, gt = poses
    base = _np(metrics.n_mpjpe_per_pose(pred, gt))
    np.testing.assert_allclose(_np(metrics.n_mpjpe_per_pose(0.4 * pred, gt)), base, rtol=1e-4)
    assert np.all(_np(metrics.mpjpe_per_pose(0.4 * pred, gt)) > base * 1.5)


def test_pa_mpjpe_does_not_allow_reflections():
    rng = np.random.default_rng(3)
    gt = rng.normal(scale=300.0, size=(4, 17, 3)).astype(np.float32)
    mirrored = gt * np.array([-1.0, 1.0, 1.0], np.float32)  # an improper transform of gt
    got = _np(metrics.pa_mpjpe_per_pose(mirrored, gt))
    assert np.all(got > 50.0), got  # a reflection-allowing fit would give 0
    np.testing.assert_allclose(got, ref_pa_mpjpe(mirrored, gt), rtol=1e-3)


def test_per_joint_shapes_and_keras_metric_means(poses):
    pred, gt = poses
    assert tuple(metrics.pa_mpjpe(pred, gt).shape) == (6, 17)
    for metric, ref in ((metrics.MPJPE(), ref_mpjpe), (metrics.NMPJPE(), ref_n_mpjpe),
                        (metrics.PAMPJPE(), ref_pa_mpjpe)):
        metric.update_state(gt[:2], pred[:2])
        metric.update_state(gt[2:], pred[2:])
        np.testing.assert_allclose(float(metric.result()), ref(pred, gt).mean(), rtol=1e-3)
        clone = metric.__class__.from_config(metric.get_config())
        assert clone.name == metric.name


@pytest.mark.large
def test_metrics_and_pose_head_train_on_jax_backend(poses, tmp_path):
    # Models, losses and metrics must also run on JAX (docs/DESIGN.md §3): the metric
    # functions, and one training step of the pose head with its loss and the metrics.
    pred, gt = poses
    np.savez(tmp_path / "p.npz", pred=pred, gt=gt)
    code = textwrap.dedent(f"""
        import keras, numpy as np
        from tf_synchro.tasks import metrics
        from tf_synchro.models import pose
        d = np.load({str(tmp_path / 'p.npz')!r})
        print(float(np.mean(metrics.pa_mpjpe_per_pose(d['pred'], d['gt']))),
              float(np.mean(metrics.n_mpjpe_per_pose(d['pred'], d['gt']))))
        keras.utils.set_random_seed(0)
        std = np.full((17, 3), 200.0, np.float32)
        # The pose head on a stand-in feature input (the ResNet's JAX test is its own).
        model = keras.Sequential([
            keras.Input((8,)), keras.layers.Dense(48),
            pose.PoseDenormalization(np.zeros((17, 3), np.float32), std)])
        model.compile(optimizer="adam", loss=pose.StandardizedPoseLoss(std),
                      metrics=metrics.pose_metrics())
        logs = model.train_on_batch(np.ones((4, 8), np.float32), d['gt'][:4],
                                    return_dict=True)
        print(keras.backend.backend(), sorted(logs))
    """)
    env = dict(os.environ, KERAS_BACKEND="jax", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    pa, n = map(float, lines[-2].split())
    np.testing.assert_allclose(pa, ref_pa_mpjpe(pred, gt).mean(), rtol=1e-3)
    np.testing.assert_allclose(n, ref_n_mpjpe(pred, gt).mean(), rtol=1e-3)
    assert lines[-1].startswith("jax"), lines[-1]
    for name in ("loss", "mpjpe", "n_mpjpe", "pa_mpjpe"):
        assert f"'{name}'" in lines[-1], lines[-1]
