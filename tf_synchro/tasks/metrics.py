"""3D pose errors in millimetres: MPJPE, N-MPJPE and PA-MPJPE (docs/DESIGN.md §2).

Every function takes poses ``[..., J, 3]`` (any units; the project uses mm), makes them
root-relative (joint 0) and returns per-joint errors ``[..., J]``; the ``*_per_pose``
helpers and the Keras metric classes average over joints. Only ``keras.ops`` is used,
so the same code runs on the TensorFlow and JAX backends and as metrics in ``fit``.

* MPJPE: Euclidean distance between prediction and ground truth.
* N-MPJPE: the prediction is first scaled by the per-pose least-squares scale
  ``s = <p, g> / <p, p>`` (Rhodin et al. 2018).
* PA-MPJPE: the prediction is first aligned by a similarity transform (scale, proper
  rotation with det = +1, translation) fitted by least squares (Umeyama 1991).
"""
from __future__ import annotations

import keras
from keras import ops

ROOT = 0
# The three pose errors, in the order reports and tables give them.
METRICS = ("mpjpe", "n_mpjpe", "pa_mpjpe")
# Guards divisions by a pose's squared norm (mm^2); a real pose has norm >> 1 mm.
_EPS = 1e-8


def root_relative(joints):
    """Subtracts the root joint (joint 0) from every joint of ``[..., J, 3]``."""
    joints = ops.convert_to_tensor(joints)
    return joints - joints[..., ROOT:ROOT + 1, :]


def _as_float32(pred, gt):
    # Errors are computed in float32 whatever the model's (mixed) precision or the
    # caller's float64 numpy arrays: mm errors need ~0.01 mm resolution at most.
    return ops.convert_to_tensor(pred, "float32"), ops.convert_to_tensor(gt, "float32")


def _distances(pred, gt):
    return ops.sqrt(ops.sum(ops.square(pred - gt), axis=-1))


def mpjpe(pred, gt):
    """Per-joint error ``[..., J]`` of root-relative poses."""
    pred, gt = _as_float32(pred, gt)
    return _distances(root_relative(pred), root_relative(gt))


def scale_to(pred, gt):
    """Root-relative ``pred`` scaled by the least-squares scale ``<p, g> / <p, p>`` per pose."""
    pred, gt = _as_float32(pred, gt)
    p, g = root_relative(pred), root_relative(gt)
    num = ops.sum(p * g, axis=(-2, -1), keepdims=True)
    den = ops.sum(p * p, axis=(-2, -1), keepdims=True)
    return p * (num / ops.maximum(den, _EPS))


def n_mpjpe(pred, gt):
    """Per-joint error ``[..., J]`` after the least-squares scale of the prediction."""
    pred, gt = _as_float32(pred, gt)
    return _distances(scale_to(pred, gt), root_relative(gt))


def procrustes_align(pred, gt):
    """``pred`` aligned to ``gt`` by the least-squares similarity transform (det R = +1).

    Minimises ``sum_j |s R p_j + t - g_j|^2`` per pose (Umeyama 1991): with centred
    points and ``Y^T X = U S V^T``, ``R = U D V^T`` with ``D = diag(1, 1, det(U V^T))``
    (which rules out reflections), ``s = tr(S D) / |X|^2``.

    Args:
      pred: ``[..., J, 3]``.
      gt: ``[..., J, 3]``.

    Returns:
      The aligned prediction ``[..., J, 3]`` (in ``gt``'s frame, not root-relative).
    """
    pred, gt = _as_float32(pred, gt)
    mu_p = ops.mean(pred, axis=-2, keepdims=True)
    mu_g = ops.mean(gt, axis=-2, keepdims=True)
    x, y = pred - mu_p, gt - mu_g
    cov = ops.einsum("...ji,...jk->...ik", y, x)  # [..., 3, 3] = Y^T X
    u, s, vt = ops.svd(cov, full_matrices=False)
    # Sign of det(U V^T): -1 means the best orthogonal fit is a reflection; flip the
    # axis of the smallest singular value instead.
    sign = ops.sign(ops.det(ops.matmul(u, vt)))
    sign = ops.where(sign == 0, ops.ones_like(sign), sign)
    d = ops.stack([ops.ones_like(sign), ops.ones_like(sign), sign], axis=-1)  # [..., 3]
    rot = ops.matmul(u * d[..., None, :], vt)  # U diag(d) V^T
    var_x = ops.sum(ops.square(x), axis=(-2, -1))
    scale = ops.sum(s * d, axis=-1) / ops.maximum(var_x, _EPS)
    aligned = scale[..., None, None] * ops.einsum("...ik,...jk->...ji", rot, x)
    return aligned + mu_g


def pa_mpjpe(pred, gt):
    """Per-joint error ``[..., J]`` after similarity Procrustes alignment (proper rotations)."""
    # The fitted translation makes the inputs' root irrelevant; the aligned prediction is
    # compared with gt as is (re-rooting it would add the root's residual to every joint).
    pred, gt = _as_float32(pred, gt)
    return _distances(procrustes_align(pred, gt), gt)


def mpjpe_per_pose(pred, gt):
    """MPJPE per pose ``[...]`` (mean over joints)."""
    return ops.mean(mpjpe(pred, gt), axis=-1)


def n_mpjpe_per_pose(pred, gt):
    """N-MPJPE per pose ``[...]``."""
    return ops.mean(n_mpjpe(pred, gt), axis=-1)


def pa_mpjpe_per_pose(pred, gt):
    """PA-MPJPE per pose ``[...]``."""
    return ops.mean(pa_mpjpe(pred, gt), axis=-1)


# ----------------------------------------------------------------------------- Keras metrics
# Keras calls metric functions as fn(y_true, y_pred); the functions above take (pred, gt).


def _mpjpe_fn(y_true, y_pred):
    return mpjpe_per_pose(y_pred, y_true)


def _n_mpjpe_fn(y_true, y_pred):
    return n_mpjpe_per_pose(y_pred, y_true)


def _pa_mpjpe_fn(y_true, y_pred):
    return pa_mpjpe_per_pose(y_pred, y_true)


@keras.saving.register_keras_serializable(package="tf_synchro")
class MPJPE(keras.metrics.MeanMetricWrapper):
    """Mean per-joint position error (units of the poses, mm here) as a Keras metric."""

    def __init__(self, name: str = "mpjpe", dtype=None):
        super().__init__(fn=_mpjpe_fn, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tf_synchro")
class NMPJPE(keras.metrics.MeanMetricWrapper):
    """MPJPE after the per-pose least-squares scale of the prediction, as a Keras metric."""

    def __init__(self, name: str = "n_mpjpe", dtype=None):
        super().__init__(fn=_n_mpjpe_fn, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tf_synchro")
class PAMPJPE(keras.metrics.MeanMetricWrapper):
    """MPJPE after similarity Procrustes alignment (det R = +1), as a Keras metric."""

    def __init__(self, name: str = "pa_mpjpe", dtype=None):
        super().__init__(fn=_pa_mpjpe_fn, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def pose_metrics() -> list[keras.metrics.Metric]:
    """The three protocol metrics, for ``model.compile(metrics=...)``."""
    return [MPJPE(), NMPJPE(), PAMPJPE()]
