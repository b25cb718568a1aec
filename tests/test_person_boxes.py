"""Person boxes (tfrecords_tools.person_boxes) on rendered multi-view takes with exact truth."""
import logging

import cv2
import numpy as np
import pytest

from tfrecords_tools import cameras, crops, h36m_calibration, person_boxes as pb, video
from tfrecords_tools.synth import body, motion, render, scene

SIZE = 120     # rendered view side (pixels)
FRAMES = 24


def _rig(size: int) -> list:
    """The Human3.6M cameras with intrinsics scaled to size x size views."""
    return [h36m_calibration.scale_camera(c, size, size) for c in cameras.h36m_rig()]


def _take(names, offsets, action="Waving", seed=0):
    """Views [V][T, H, W, 3] of people standing at ``offsets`` (world mm) in the textured
    room, their exact pixel masks [V][T, P, H, W], joints [P][T, 17, 3], the plates."""
    cams = _rig(SIZE)
    plates = [scene.render_background(c, seed) for c in cams]
    people = []
    for k, (name, (x, y)) in enumerate(zip(names, offsets)):
        subject = body.make_subject(name, seed)
        j = motion.generate_motion(subject, action, FRAMES, np.random.default_rng(k))
        j = j - j[:1, :1] * np.array([1, 1, 0]) + np.array([x, y, 0.0])
        people.append((subject, j))
    views, masks = [], []
    for cam, plate in zip(cams, plates):
        frames, ms = [], []
        for t in range(FRAMES):
            img, m = plate, []
            for subject, j in people:
                img = render.render_view(j[t], cam, subject, background=img)
                m.append(render.person_mask(j[t], cam, subject))
            frames.append(img)
            ms.append(np.stack(m))
        views.append(np.stack(frames))
        masks.append(np.stack(ms))
    return {"cams": cams, "plates": plates, "joints": [j for _, j in people], "views": views,
            "masks": masks}


@pytest.fixture(scope="module")
def still():
    """One person waving on the spot (the rest of the body barely moves)."""
    return _take(["still"], [(0, 0)])


@pytest.fixture(scope="module")
def pair():
    """Two people waving on the spot, 2.2 m apart."""
    return _take(["left", "right"], [(-1100, 200), (1100, -200)])


def _inside(box, uv, tol=1.0):
    return ((uv[:, 0] >= box[0] - tol) & (uv[:, 0] <= box[2] + tol)
            & (uv[:, 1] >= box[1] - tol) & (uv[:, 1] <= box[3] + tol))


# ---------------------------------------------------------------------------- generator takes


def test_still_person_boxed_and_kept_whole_with_a_clean_plate(still):
    result = pb.find_boxes(still["views"], pb.BoxConfig(), plates=still["plates"])
    assert result.found.all() and result.people_seen == 1 and not result.notes
    kept, background = [], []
    for v, cam in enumerate(still["cams"]):
        for t in range(FRAMES):
            box = result.boxes[v, t]
            assert abs((box[2] - box[0]) - (box[3] - box[1])) < 1e-6  # square
            assert _inside(box, cam.project(still["joints"][0][t])).all(), (v, t)
            truth = crops.crop_image(still["masks"][v][t, 0].astype(np.uint8) * 255, box,
                                     64) > 127
            keep = result.keep_crop(v, t, box, 64)
            kept.append((keep & truth).sum() / truth.sum())
            background.append((keep & ~truth).sum() / (~truth).sum())
    assert np.mean(kept) >= 0.95 and np.min(kept) >= 0.85, (np.mean(kept), np.min(kept))
    assert np.mean(background) < 0.2, np.mean(background)  # and the scene is removed


def test_two_people_never_boxed_together(pair, caplog):
    with caplog.at_level(logging.WARNING):
        result = pb.find_boxes(pair["views"], pb.BoxConfig(), cameras=pair["cams"],
                               plates=pair["plates"], name="seq/pair")
    assert result.people_seen == 2
    assert any("seq/pair: 2 people seen" in r.getMessage() for r in caplog.records)
    chosen = set()
    for v, cam in enumerate(pair["cams"]):
        for t in range(FRAMES):
            box = result.boxes[v, t]
            inside = [_inside(box, cam.project(j[t])).mean() for j in pair["joints"]]
            k = int(np.argmax(inside))
            assert inside[k] == 1.0 and inside[1 - k] <= 0.2, (v, t, inside)
            chosen.add(k)
    assert len(chosen) == 1  # the same person in every view (calibration)
    # The keep mask holds none of the other person's pixels.
    t, other = FRAMES // 2, 1 - chosen.pop()
    for v in range(len(pair["cams"])):
        keep = result.keep_mask(v, t, (SIZE, SIZE))
        assert (keep & pair["masks"][v][t, other]).sum() == 0


def test_disagreeing_view_replaced_by_the_consensus_projection(still):
    views = [v.copy() for v in still["views"]]
    # View 1 shows the person 30 px to the right of where the calibration puts them (a
    # wrong detection, e.g. a reflection, or a bad calibration of that camera).
    for t in range(FRAMES):
        shifted = np.roll(still["masks"][1][t, 0], 30, axis=1)
        views[1][t] = still["plates"][1]
        views[1][t][shifted] = np.roll(still["views"][1][t], 30, axis=1)[shifted]
    config = pb.BoxConfig(smoothing=1)
    plain = pb.find_boxes(views, config, plates=still["plates"])
    checked = pb.find_boxes(views, config, cameras=still["cams"], plates=still["plates"])
    centre = lambda b: (b[:2] + b[2:]) / 2
    for t in range(FRAMES):
        uv = still["cams"][1].project(still["joints"][0][t])
        truth, height = crops.square_box(uv), np.ptp(uv[:, 1])
        assert np.linalg.norm(centre(plain.boxes[1, t]) - centre(truth)) > 0.5 * height
        assert np.linalg.norm(centre(checked.boxes[1, t]) - centre(truth)) < 0.2 * height, t
        assert _inside(checked.boxes[1, t], uv).all(), t
    np.testing.assert_array_equal(checked.source[1], pb.PROJECTED)
    assert (np.delete(checked.source, 1, axis=0) == pb.DETECTED).all()
    assert not checked.found[1].any() and plain.found[1].all()
    assert any(f"view 55011271: 0 frame(s) took another detection and {FRAMES} the "
               f"projection" in n for n in checked.notes), checked.notes


def test_dropout_holds_the_last_box(still):
    views = [v.copy() for v in still["views"]]
    views[0][10:14] = still["plates"][0]  # the person vanishes for 4 frames in view 0
    result = pb.find_boxes(views, pb.BoxConfig(smoothing=1, hold_frames=5),
                           plates=still["plates"])
    assert not result.found[0, 10:14].any() and result.found[0, :10].all()
    np.testing.assert_array_equal(result.source[0, 10:14], pb.HELD)
    np.testing.assert_array_equal(result.boxes[0, 10:14], np.repeat(result.boxes[0, 9:10], 4, 0))
    # The kept pixels of a held frame are those of the last detection, moved with the box.
    np.testing.assert_array_equal(result.keep_mask(0, 11, (SIZE, SIZE)),
                                  result.keep_mask(0, 9, (SIZE, SIZE)))


def test_still_person_without_a_plate_is_reported(still):
    """A median of the take holds most of a person who barely moves; with calibration the
    boxes' size in mm gives it away, and the frames whose boxes shrank onto the waving
    arms take the take's body-sized boxes (every joint share in the box: 0.54 without
    that fallback, measured with min_body=0)."""
    result = pb.find_boxes(still["views"], pb.BoxConfig(), cameras=still["cams"])
    assert any("give a clean plate" in n for n in result.notes), result.notes
    assert any("body-sized box" in n for n in result.notes), result.notes
    inside = np.mean([_inside(result.boxes[v, t], cam.project(still["joints"][0][t])).mean()
                      for v, cam in enumerate(still["cams"]) for t in range(FRAMES)])
    assert inside > 0.72, inside
    with_plate = pb.find_boxes(still["views"], pb.BoxConfig(), cameras=still["cams"],
                               plates=still["plates"])
    assert not any("background model" in n for n in with_plate.notes), with_plate.notes


def test_median_background_boxes_a_walking_person():
    """No plate: the default two-pass median of the take finds a person who moves about."""
    take = _take(["walker"], [(0, 0)], action="Walking")
    result = pb.find_boxes(take["views"], pb.BoxConfig())
    assert result.found.mean() > 0.95
    inside = [_inside(result.boxes[v, t], cam.project(take["joints"][0][t])).mean()
              for v, cam in enumerate(take["cams"]) for t in range(FRAMES)]
    assert np.mean(inside) > 0.95, np.mean(inside)


def _still_and_walker(seed: int = 0):
    """Views [V][T, H, W, 3] of one person waving at the rig's capture centre and another
    walking past nearer some cameras, the plates and both people's joints."""
    cams = _rig(SIZE)
    plates = [scene.render_background(c, seed) for c in cams]
    centre = pb.capture_centre(cams)
    people = []
    for k, (name, action, at) in enumerate((("still", "Waving", centre[:2]),
                                            ("walker", "Walking", centre[:2] + [1600, -900]))):
        subject = body.make_subject(name, seed)
        j = motion.generate_motion(subject, action, FRAMES, np.random.default_rng(k))
        j = j - j[:1, :1] * np.array([1, 1, 0]) + np.array([at[0], at[1], 0.0])
        people.append((subject, j))
    views = []
    for cam, plate in zip(cams, plates):
        frames = []
        for t in range(FRAMES):
            img = plate
            for subject, j in people:
                img = render.render_view(j[t], cam, subject, background=img)
            frames.append(img)
        views.append(np.stack(frames))
    return cams, plates, views, [j for _, j in people]


def _boxed(result, cams, joints) -> set:
    """Which person (index into joints) each view-frame's box holds, as a set."""
    out = set()
    for v, cam in enumerate(cams):
        for t in range(FRAMES):
            inside = [_inside(result.boxes[v, t], cam.project(j[t])).mean() for j in joints]
            out.add(int(np.argmax(inside)) if max(inside) > 0.9 else -1)
    return out


def test_centre_prior_boxes_the_person_the_cameras_look_at():
    """The subject is the person at the capture centre, not the walker passing by (who is
    as persistent and, nearer the cameras, bigger): with calibration (3D) and without
    (image centre, each view alone)."""
    cams, plates, views, joints = _still_and_walker()
    centre = pb.capture_centre(cams)
    for cam in cams:  # every optical axis passes near it
        uv = cam.project(centre)
        assert np.hypot(uv[0] - cam.cx, uv[1] - cam.cy) < 0.15 * SIZE
    for cameras_ in (cams, None):
        result = pb.find_boxes(views, pb.BoxConfig(smoothing=1), cameras=cameras_,
                               plates=plates)
        assert result.people_seen == 2
        assert _boxed(result, cams, joints) == {0}, cameras_ is None
        assert any("boxing the one nearest the centre" in n for n in result.notes)
    persistent = pb.find_boxes(views, pb.BoxConfig(smoothing=1, subject="persistent"),
                               plates=plates)
    assert 1 in _boxed(persistent, cams, joints)  # the old rule takes the walker somewhere


def test_a_ball_or_a_box_is_not_a_person():
    """Shape prior: compact or wide blobs neither count in people_seen nor get boxed."""
    config = pb.BoxConfig(open_kernel=1, close_kernel=1)
    mask = np.zeros((100, 100), bool)
    _blob(mask, 40, 20, 48, 50)            # a person: torso and head
    _blob(mask, 36, 51, 40, 80)            # legs apart
    _blob(mask, 48, 51, 52, 80)
    cv2.circle(mask.view(np.uint8), (83, 45), 16, 1, -1)  # a ball over half their height
    _blob(mask, 0, 90, 18, 99)             # a box, wider than tall
    (person,) = pb.find_people(mask, config)
    np.testing.assert_array_equal(person.box, [36, 20, 52, 80])
    ball = np.zeros((100, 100), np.uint8)
    cv2.circle(ball, (50, 50), 30, 1, -1)
    assert pb.find_people(ball.astype(bool), config) == []
    # Over a take: a ball rolling past a standing person is not a second person.
    rng = np.random.default_rng(0)
    frames = []
    for t in range(12):
        img = np.full((100, 100, 3), 90, np.uint8) + rng.integers(0, 3, (100, 100, 3),
                                                                   dtype=np.uint8)
        img[20:81, 40:53] = (200, 40, 40)
        cv2.circle(img, (5 + 8 * t, 40), 17, (40, 200, 40), -1)
        frames.append(img)
    plate = np.full((100, 100, 3), 90, np.uint8)
    result = pb.find_boxes([np.stack(frames)], pb.BoxConfig(smoothing=1), plates=[plate])
    assert result.people_seen == 1 and not result.notes, result.notes
    assert result.found.all()


# ---------------------------------------------------------------------------- pieces


def _blob(mask, x0, y0, x1, y1):
    mask[y0:y1 + 1, x0:x1 + 1] = True


def test_blobs_join_a_split_person_but_not_two_people():
    config = pb.BoxConfig(open_kernel=1, close_kernel=1)
    split = np.zeros((100, 100), bool)
    _blob(split, 40, 10, 55, 45)   # torso and head
    _blob(split, 42, 50, 53, 90)   # legs, cut off by a background-coloured belt
    _blob(split, 60, 20, 63, 40)   # an arm, apart from the body
    (person,) = pb.find_people(split, config)
    np.testing.assert_array_equal(person.box, [40, 10, 63, 90])
    two = np.zeros((100, 100), bool)
    _blob(two, 10, 10, 30, 90)
    _blob(two, 36, 15, 55, 88)     # a second person 5 px away
    _blob(two, 80, 80, 82, 82)     # noise: too small to be anyone
    people = pb.find_people(two, config)
    assert [p.box.tolist() for p in people] == [[10, 10, 30, 90], [36, 15, 55, 88]]
    keep = people[0].keep_mask()
    (x0, y0), (h, w) = people[0].origin, keep.shape
    assert not keep[:, 36 - x0:].any()  # the first person's mask stops short of the second


def test_pieces_inside_the_subjects_box_are_one_person():
    # A still person whose median holds the body shows two tall pieces side by side (two
    # hands, a hand and a board): the grouping keeps them apart, but inside the subject's
    # box they are one person (the caliscope sessions warned of 2 people); a blob outside
    # that box is a second person.
    config = pb.BoxConfig(open_kernel=1, close_kernel=1)
    two = np.zeros((100, 100), bool)
    _blob(two, 10, 10, 30, 90)
    _blob(two, 36, 15, 55, 88)
    frames = [pb.find_people(two, config)] * 3
    assert len(frames[0]) == 2
    assert pb._count_people(frames, 3, 100) == 2
    around_both = np.tile([5.0, 5.0, 60.0, 95.0], (3, 1))
    assert pb._count_people(frames, 3, 100, subject=around_both) == 1
    around_first = np.tile([5.0, 5.0, 32.0, 95.0], (3, 1))
    assert pb._count_people(frames, 3, 100, subject=around_first) == 2
    assert pb._count_people(frames, 3, 100, subject=np.full((3, 4), np.nan)) == 2


def test_hold_fill_and_smooth():
    boxes = np.array([[0, 0, 10, 10], [0] * 4, [0] * 4, [0] * 4, [10, 0, 20, 10.0]])
    have = np.array([True, False, False, False, True])
    out, source = pb.hold_and_fill(boxes, have, hold=1)
    np.testing.assert_array_equal(source, [pb.DETECTED, pb.HELD, pb.FILLED, pb.FILLED,
                                           pb.DETECTED])
    np.testing.assert_array_equal(out[:, 0], [0, 0, 0, 10, 10])  # held, then the nearest
    out, source = pb.hold_and_fill(boxes, np.zeros(5, bool), hold=1)
    assert np.isnan(out).all() and (source == pb.NONE).all()
    smooth = pb.smooth_boxes(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [10, 0, 20, 10.0]]), 3)
    np.testing.assert_allclose(smooth[1], [10 / 3, 0, 10 / 3 + 10, 10])


def test_masked_median_with_masks():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (5, 6, 7, 3)).astype(np.uint8)
    exclude = rng.random((5, 6, 7)) < 0.4
    exclude[:, 0, 0] = True  # covered in every sample: the plain median stands in
    ref = frames.astype(float)
    ref[exclude] = np.nan
    ref[:, 0, 0] = frames[:, 0, 0]
    expected = np.round(np.nanmedian(ref, 0))
    np.testing.assert_array_equal(video.masked_median(frames, exclude_masks=exclude), expected)


def test_bad_config_names_the_field():
    with pytest.raises(pb.BoxConfigError, match=r"background='sky': expected one of"):
        pb.BoxConfig(background="sky")
    with pytest.raises(pb.BoxConfigError, match="hold_frames=-1"):
        pb.BoxConfig(hold_frames=-1)
    with pytest.raises(pb.BoxConfigError, match=r"subject='tallest': expected one of"):
        pb.BoxConfig(subject="tallest")
    with pytest.raises(ValueError, match="view 0 has no clean plate"):
        pb.find_boxes([np.zeros((2, 8, 8, 3), np.uint8)], pb.BoxConfig(background="plate"))


# ---------------------------------------------------------------------------- the rig converter


def test_rig_uses_clean_plates_and_lists_the_other_person(pair, tmp_path):
    """rig: plates from the sequence's background/ folder, the multi-view check from its
    calibration, --background=remove keeps the tracked person only, and the manifest
    lists the second person."""
    import json
    from tests import h36m_fixtures as hf
    from tfrecords_tools import rig
    seq = tmp_path / "rig" / "pair"
    (seq / rig.PLATES).mkdir(parents=True)
    calib = {}
    for cam, frames, plate in zip(pair["cams"], pair["views"], pair["plates"]):
        hf.write_video(str(seq / f"{cam.camera_id}.mp4"), frames)
        hf.write_video(str(seq / rig.PLATES / f"{cam.camera_id}.mp4"), [plate] * 3)
        calib[cam.camera_id] = {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
                                "width": cam.width, "height": cam.height,
                                "rotation": cam.rotation.tolist(),
                                "translation": cam.translation.tolist()}
    (seq / "calibration.json").write_text(json.dumps({"cameras": calib}))
    out = str(tmp_path / "out")
    manifest = rig.convert(rig.RigConfig(str(tmp_path / "rig"), image_size=48,
                                         background="remove", box_background="plate",
                                         motion_threshold=0), out, log_fn=lambda s: None)
    reasons = {s["item"]: s["reason"] for s in manifest["skipped"]}
    assert "2 people seen at once" in reasons["rig/pair people"], reasons
    (clip,) = hf.read_clips(out)
    kernel = np.ones((3, 3), np.uint8)
    dark, kept, who = [], [], set()
    for v, cam in enumerate(pair["cams"]):
        for t in clip.frame_index:
            box = clip.crop_boxes[t, v]
            k = int(np.argmax([_inside(box, cam.project(j[t])).mean() for j in pair["joints"]]))
            who.add(k)
            mask = crops.crop_image(pair["masks"][v][t, k].astype(np.uint8), box, 48)
            img = hf.decode(clip.images[t][v]).max(-1)
            dark.append((img[cv2.dilate(mask, kernel) == 0] < 40).mean())
            kept.append((img[cv2.erode(mask, kernel) > 0] >= 40).mean())
    assert len(who) == 1  # one person, the same in every view
    assert np.mean(dark) > 0.9 and np.mean(kept) > 0.9, (np.mean(dark), np.mean(kept))
    # No plate for a camera with --box_background=plate: the sequence is skipped, named.
    (seq / rig.PLATES / f"{pair['cams'][0].camera_id}.mp4").unlink()
    with pytest.raises(rig.RigError, match="have no clean plate"):
        rig.discover(rig.RigConfig(str(tmp_path / "rig"), box_background="plate"))


def test_rig_finds_clean_plates(tmp_path):
    """A sequence's background/ folder wins over --background_video; stems are camera ids."""
    from tfrecords_tools import rig
    root, shared = tmp_path / "rig", tmp_path / "plates"
    for seq in ("a", "b"):
        (root / seq).mkdir(parents=True)
        for cam in ("c0", "c1"):
            (root / seq / f"{cam}.mp4").write_bytes(b"")
    shared.mkdir()
    (shared / "c0.mp4").write_bytes(b"")
    (shared / "other_rig_cam.mp4").write_bytes(b"")  # another rig's camera: ignored
    (root / "b" / rig.PLATES).mkdir()
    (root / "b" / rig.PLATES / "c1.avi").write_bytes(b"")
    specs, _ = rig.discover(rig.RigConfig(str(root), background_video=str(shared)))
    plates = {s.name: dict(s.plates) for s in specs}
    assert plates == {"a": {"c0": str(shared / "c0.mp4")},
                      "b": {"c1": str(root / "b" / rig.PLATES / "c1.avi")}}
    (root / "b" / rig.PLATES / "c9.mp4").write_bytes(b"")
    _, skipped = rig.discover(rig.RigConfig(str(root)))
    assert any("clean plates ['c9'] match no camera" in s.reason for s in skipped)
    with pytest.raises(rig.RigError, match="--background_video"):
        rig.RigConfig(str(root), background_video=str(tmp_path / "missing"))


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    area = lambda x: (x[2] - x[0]) * (x[3] - x[1])
    return w * h / (area(a) + area(b) - w * h)


def test_visual_hull_drops_an_object_touching_the_person_in_one_view(still):
    """A patch that touches the person in one view only has no 3D body: the hull step
    carves it away, so that view's box stays on the person; without it the box grows."""
    views = [v.copy() for v in still["views"]]
    for t in range(FRAMES):
        ys, xs = np.nonzero(still["masks"][0][t, 0])
        h = ys.max() - ys.min() + 1
        x0, y0 = xs.max() - 1, ys.min() + h // 5
        views[0][t, y0:y0 + h // 4, x0:x0 + h // 2] = (250, 20, 200)
    truth = [crops.square_box(np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]],
                                       np.float64), 0.2)
             for xs, ys in (np.nonzero(m[0])[::-1] for m in still["masks"][0])]
    boxes = lambda config: pb.find_boxes(views, config, cameras=still["cams"],
                                         plates=still["plates"]).boxes[0]
    hull, plain = boxes(pb.BoxConfig(smoothing=1)), boxes(pb.BoxConfig(smoothing=1,
                                                                      hull_voxel_mm=0))
    iou_hull = [_iou(b, t) for b, t in zip(hull, truth)]
    iou_plain = [_iou(b, t) for b, t in zip(plain, truth)]
    # 47 px people in 120 px views: the hull of 4 views keeps a rim of the patch.
    assert np.median(iou_hull) >= 0.83 and np.min(iou_hull) >= 0.75, np.round(iou_hull, 2)
    assert np.median(iou_plain) <= 0.75, np.round(iou_plain, 2)
    for t in range(FRAMES):
        assert _inside(hull[t], still["cams"][0].project(still["joints"][0][t])).all(), t


def test_hull_config_ranges():
    for field, value in (("hull_voxel_mm", -1.0), ("hull_misses", -1), ("hull_radius", -0.1)):
        with pytest.raises(pb.BoxConfigError, match=field):
            pb.BoxConfig(**{field: value})


def _standing_box(cam, at) -> np.ndarray:
    """Full-pixel tight box of a 1.8 m person standing at world floor point ``at``
    (mm), 0.3 times as wide as tall."""
    foot, head = cam.project(np.array([at[0], at[1], 0.0])), cam.project(
        np.array([at[0], at[1], 1800.0]))
    cx, h = (foot[0] + head[0]) / 2, abs(foot[1] - head[1])
    return np.array([cx - 0.15 * h, min(foot[1], head[1]), cx + 0.15 * h,
                     max(foot[1], head[1])])


def test_a_point_two_views_make_of_two_people_has_no_third_view():
    """Subject rule: the rays of two views meet near the capture centre even when each
    boxes another person; only the views that box the same person are backed by the
    other views (_unsupported counts the others' looks that show no one there)."""
    cams = _rig(1000)
    centre = pb.capture_centre(cams)
    main, other = centre[:2], centre[:2] + np.array([1800.0, 0.0])
    boxes = {v: [_standing_box(c, main), _standing_box(c, other)] for v, c in enumerate(cams)}
    people = [[[None, None]] for _ in cams]  # one frame, two people per view
    full = lambda v, t, j: boxes[v][j]
    config = pb.BoxConfig()

    def lone(ja, jb):
        pair = {0: full(0, 0, ja), 1: full(1, 0, jb)}
        x = pb._triangulate([cams[0], cams[1]],
                            np.stack([(b[:2] + b[2:]) / 2 for b in pair.values()]))
        return pb._unsupported(cams, full, people, 0, x, pair, (0, 1),
                               pb._tolerances(config, cams))

    assert lone(0, 0) == [0.0, 0.0]  # the main person, seen by views 2 and 3 too
    assert lone(1, 1) == [0.0, 0.0]  # the bystander, also a person in 3D
    assert lone(0, 1) == [1.0, 1.0] and lone(1, 0) == [1.0, 1.0]


def test_gap_left_to_the_projection_where_a_view_shows_two_people():
    """With the multi-view check, a frame the chosen track missed does not take the
    nearest blob of a view that shows two people (often the other person)."""
    def person(x):
        return pb.Person(box=np.array([x, 10.0, x + 10, 50]), area=200, origin=(0, 0),
                         keep=np.zeros(1, np.uint8), shape=(1, 1))
    people = [[person(20), person(45)], [person(45)], [person(20), person(45)]]
    for nearest, expected in ((True, [0, 0, 0]), (False, [0, -1, 0])):
        chosen = np.array([0, -1, 0])
        pb._fill_track_gaps(people, chosen, alone=False, nearest=nearest)
        np.testing.assert_array_equal(chosen, expected)
    chosen = np.array([0, -1, 0])
    pb._fill_track_gaps(people, chosen, alone=True, nearest=False)  # alone: the only blob
    np.testing.assert_array_equal(chosen, [0, 0, 0])


def test_body_fallback_replaces_only_the_frames_far_below_a_person():
    """Frames whose boxes are under min_body person heights in 3D (a still person's hands)
    take, per view, the union of the view's boxes over the take; the others stay."""
    cams = _rig(1000)
    at = pb.capture_centre(cams)[:2]
    frames = 10
    tight = np.zeros((len(cams), frames, 4))
    for v, cam in enumerate(cams):
        body = _standing_box(cam, at)
        h, cx = body[3] - body[1], (body[0] + body[2]) / 2
        hands = np.array([cx - 0.1 * h, body[1], cx + 0.1 * h, body[1] + 0.2 * h])  # 0.36 m
        tight[v] = [body] * 6 + [hands] * 4
    source = np.full((len(cams), frames), pb.DETECTED, np.int8)
    before = tight.copy()
    assert pb._body_fallback(pb.BoxConfig(), cams, tight, source) == 4
    np.testing.assert_array_equal(tight[:, :6], before[:, :6])
    for v in range(len(cams)):
        union = np.concatenate([np.percentile(before[v, :, :2], 10, 0),
                                np.percentile(before[v, :, 2:], 90, 0)])
        np.testing.assert_allclose(tight[v, 6:], np.tile(union, (4, 1)))
        assert tight[v, 6, 3] - tight[v, 6, 1] > 0.9 * (before[v, 0, 3] - before[v, 0, 1])
    assert pb._body_fallback(pb.BoxConfig(min_body=0.1), cams, before.copy(), source) == 0
    with pytest.raises(pb.BoxConfigError, match="min_body"):
        pb.BoxConfig(min_body=-0.1)


def test_guard_replaces_a_projected_box_off_the_consensus_only():
    """A view without a detection of its own whose box from the hull holds another
    person (wider, or pulled aside, against the detected views' consensus projected
    there) takes that projection; one close to it, and detected views, are untouched."""
    cams = _rig(1000)
    at = pb.capture_centre(cams)[:2]
    frames = 3
    tight = np.stack([np.tile(_standing_box(cam, at), (frames, 1)) for cam in cams])
    source = np.full((len(cams), frames), pb.DETECTED, np.int8)
    source[3] = pb.PROJECTED
    truth = tight[3, 0].copy()
    h = truth[3] - truth[1]
    tight[3, 0, 2] += 1.0 * h       # a bystander beside the subject: 1.3 x as wide as tall
    tight[3, 1, [0, 2]] += 0.3 * h  # pulled aside by 0.3 heights, the same size
    tight[3, 2, 3] += 0.08 * h      # 8% taller: square IoU 0.86, within 0.8
    before = tight.copy()
    np.testing.assert_array_equal(pb._guard_projected(pb.BoxConfig(), cams, tight, source),
                                  [0, 0, 0, 2])
    side = lambda b: max(b[2] - b[0], b[3] - b[1])
    centre = lambda b: (b[:2] + b[2:]) / 2
    for t in (0, 1):  # the projection of the consensus: the subject's own box
        assert abs(side(tight[3, t]) / side(truth) - 1) < 0.1
        assert np.linalg.norm(centre(tight[3, t]) - centre(truth)) < 0.05 * h
    np.testing.assert_array_equal(tight[3, 2], before[3, 2])
    np.testing.assert_array_equal(tight[:3], before[:3])
    # A detected view keeps its own box, however far off.
    source[3] = pb.DETECTED
    assert not pb._guard_projected(pb.BoxConfig(), cams, before.copy(), source).any()
    with pytest.raises(pb.BoxConfigError, match="projected_guard"):
        pb.BoxConfig(projected_guard=1.0)


# ---------------------------------------------------------------------------- lighting gain


def test_light_gain_undoes_a_global_brightness_change():
    rng = np.random.default_rng(0)
    background = rng.integers(60, 190, (64, 64, 3)).astype(np.uint8)  # none clips at 255
    gain = np.array([1.3, 1.2, 1.25])
    frame = np.clip(np.round(background * gain), 0, 255).astype(np.uint8)
    frame[20:40, 25:35] = (250, 10, 10)  # a person: not fitted, not part of the gain
    out = pb.compensate_light(frame, background, 30.0)
    rest = np.ones((64, 64), bool)
    rest[20:40, 25:35] = False
    assert np.abs(out[rest].astype(int) - background[rest]).max() <= 2
    # Uncompensated, every bright pixel would be foreground; the person still is.
    assert video.foreground_mask(frame, background, 30.0, kernel=1)[rest].mean() > 0.3
    mask = video.foreground_mask(out, background, 30.0, kernel=1)
    assert not mask[rest].any() and mask[20:40, 25:35].all()
    # A gain within 1% of 1 leaves the frame as it is (no rounding of every pixel).
    near = np.clip(np.round(background * 1.005), 0, 255).astype(np.uint8)
    assert pb.compensate_light(near, background, 30.0) is near


def test_lighting_drift_is_not_boxed_as_the_person(still):
    """The room brightens by up to 35% over the take; against the clean plate, without the
    gain the bright frames are foreground everywhere and the boxes grow to the frame."""
    drift = 1.0 + 0.35 * np.linspace(0, 1, FRAMES)[:, None, None, None]
    views = [np.clip(np.round(v * drift), 0, 255).astype(np.uint8) for v in still["views"]]
    sides = {}
    for on in (True, False):
        result = pb.find_boxes(views, pb.BoxConfig(light_gain=on), still["cams"],
                               still["plates"])
        ratio = []
        for v in range(len(views)):
            for t in range(FRAMES):
                ys, xs = np.nonzero(still["masks"][v][t, 0])
                true = crops.square_box(np.array([[xs.min(), ys.min()], [xs.max(), ys.max()]],
                                                 np.float64), 0.2)
                ratio.append((result.boxes[v, t, 2] - result.boxes[v, t, 0])
                             / (true[2] - true[0]))
        sides[on] = np.asarray(ratio)
    assert np.median(sides[True]) < 1.15 and np.percentile(sides[True], 90) < 1.3, sides[True]
    assert np.percentile(sides[False], 90) > 1.5, sides[False]
