"""Record schema round trip, camera conventions and the crop transform."""
import numpy as np
import pytest

from tfrecords_tools import cameras, crops, schema, skeleton


def _clip(t=5, v=3, labels=True, size=40):
    rng = np.random.default_rng(0)
    import cv2
    imgs = [[cv2.imencode(".jpg", rng.integers(0, 255, (size, size, 3), np.uint8))[1].tobytes()
             for _ in range(v)] for _ in range(t)]
    return schema.Clip(
        subject="S1", action="Walking", sequence_id="S1/Walking 1", fps=50.0, clip_index=2,
        frame_index=np.array([0, 1, 5, 6, 9][:t]), camera_ids=[f"c{i}" for i in range(v)],
        intrinsics=rng.normal(size=(v, 4)), distortion=np.zeros((v, 5)),
        rotation=rng.normal(size=(v, 3, 3)), translation=rng.normal(size=(v, 3)),
        image_wh=np.full((v, 2), 1000), image_size=size, has_background=False, images=imgs,
        crop_boxes=rng.uniform(0, 900, size=(t, v, 4)),
        joints3d_world=rng.normal(size=(t, 17, 3)) * 500 if labels else None)


@pytest.mark.parametrize("labels", [True, False])
def test_round_trip_numpy_and_tf(labels):
    import tensorflow as tf
    clip = _clip(labels=labels)
    data = schema.encode_clip(clip)
    back = schema.decode_clip(data)
    assert back.sequence_id == clip.sequence_id and back.camera_ids == list(clip.camera_ids)
    np.testing.assert_array_equal(back.frame_index, clip.frame_index)
    np.testing.assert_allclose(back.rotation, clip.rotation, rtol=1e-6)
    np.testing.assert_allclose(back.crop_boxes, clip.crop_boxes, rtol=1e-6)
    assert back.images[3][1] == clip.images[3][1]
    assert (back.joints3d_world is None) == (not labels)
    parsed = schema.parse_clip_tf(tf.constant(data))
    assert parsed["image/encoded"].shape == (5, 3)
    assert parsed["image/encoded"][3, 1].numpy() == clip.images[3][1]
    assert parsed["pose/joints3d_world"].shape == ((5, 17, 3) if labels else (0, 17, 3))
    np.testing.assert_allclose(parsed["image/crop_box"].numpy(), clip.crop_boxes, rtol=1e-6)


def test_bad_records_are_named():
    clip = _clip()
    clip.crop_boxes = clip.crop_boxes[:, :2]
    with pytest.raises(schema.SchemaError, match="crop_boxes"):
        schema.encode_clip(clip)
    with pytest.raises(schema.SchemaError, match="shard-7 record 3"):
        schema.decode_clip(b"\x00garbage", where="shard-7 record 3")


def test_h36m_rig_matches_published_parameters():
    rig = cameras.h36m_rig()
    for cam in rig:
        q, c = cameras.H36M_S1_EXTRINSICS[cam.camera_id]
        np.testing.assert_allclose(cam.centre, c, atol=1e-6)
        np.testing.assert_allclose(cam.rotation @ cam.rotation.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(cam.rotation) == pytest.approx(1.0)
        # Every camera looks at the capture volume: the world origin region is in front and
        # projects near the image centre.
        p = cam.world_to_camera(np.array([0.0, 0.0, 900.0]))
        assert p[2] > 3000
        u, v = cam.project(np.array([0.0, 0.0, 900.0]))
        assert 0 < u < cam.width and 0 < v < cam.height
        # World z is up: a point above projects higher in the image (smaller v).
        assert cam.project(np.array([0.0, 0.0, 1800.0]))[1] < v
    np.testing.assert_allclose(rig[0].camera_to_world(rig[0].world_to_camera(np.ones(3))),
                               np.ones(3), atol=1e-9)


def test_crop_transform_is_exactly_invertible_and_matches_warp():
    box = crops.square_box(np.array([[100.0, 200.0], [180.0, 420.0]]), margin=0.1)
    assert box[2] - box[0] == pytest.approx(box[3] - box[1])
    pts = np.array([[120.3, 250.7], [175.0, 400.0]])
    np.testing.assert_allclose(crops.crop_to_image(crops.image_to_crop(pts, box, 64), box, 64),
                               pts, atol=1e-9)
    img = np.zeros((600, 400), np.uint8)
    import cv2
    cv2.circle(img, (150, 300), 8, 255, -1)  # a blob: a lone pixel can fall between samples
    out = crops.crop_image(img, box, 64)
    ys, xs = np.mgrid[:64, :64]
    centroid = np.array([(xs * out).sum(), (ys * out).sum()]) / out.sum()
    expect = crops.image_to_crop(np.array([[150.0, 300.0]]), box, 64)[0]
    np.testing.assert_allclose(centroid, expect, atol=0.1)


def test_flip_permutation_swaps_left_right():
    j = np.arange(17 * 3, dtype=float).reshape(17, 3)
    f = skeleton.flip_joints_camera(j)
    assert f[skeleton.JOINT_NAMES.index("LWrist"), 1] == j[skeleton.JOINT_NAMES.index("RWrist"), 1]
    assert f[0, 0] == -j[0, 0]
    np.testing.assert_array_equal(skeleton.flip_joints_camera(f), j)
