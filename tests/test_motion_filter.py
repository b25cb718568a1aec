import numpy as np

from tfrecords_tools import motion_filter


def test_static_stretch_is_dropped_and_motion_kept():
    t = np.arange(100)
    joints = np.zeros((100, 17, 3))
    moving = (t < 40) | (t >= 70)
    joints[:, 5, 0] = np.cumsum(np.where(moving, 10.0, 0.0))  # 10 mm per frame, static 40..69
    joints[:, :, 1] += 5.0 * t[:, None]  # whole-body translation is ignored (root-relative)
    keep = motion_filter.moving_frames_3d(joints, threshold_mm=15.0)
    assert keep[0] and not keep[50:69].any()
    assert keep[:40].sum() >= 18 and keep[70:].sum() >= 14
    assert motion_filter.moving_frames_3d(joints, 0).all()


def test_image_difference_filter():
    frames = np.zeros((10, 8, 8))
    frames[5:] = 100.0
    keep = motion_filter.moving_frames_2d(frames, threshold=1.0)
    np.testing.assert_array_equal(np.flatnonzero(keep), [0, 5])
