"""Rig cameras at different frame rates: refused, or resampled by timestamps (rig.py).

The fixture's videos show a binary clock: frame content encodes the instant in 50 fps
ticks, so a stored crop tells which instant it shows.
"""
import json
import os

import cv2
import numpy as np
import pytest

from tests import h36m_fixtures as hf
from tfrecords_tools import rig, schema, video
from tfrecords_tools.runtime import cli

SIDE = 64     # video frames are SIDE x SIDE: the fixed crop is the whole frame
CROP = 32     # stored crop side
BITS = 8      # vertical stripes, one bit each
BIAS = 8      # code = tick + BIAS, so the instants before the common start are codes too
B_OFFSET = 3  # camera b started 3 of its (50 fps) frames early


def _clock(tick: int) -> np.ndarray:
    """RGB frame whose stripes spell ``tick + BIAS`` in binary (bit j: stripe j white)."""
    frame = np.zeros((SIDE, SIDE, 3), np.uint8)
    w = SIDE // BITS
    for j in range(BITS):
        if (tick + BIAS) >> j & 1:
            frame[:, j * w:(j + 1) * w] = 255
    return frame


def _read_clock(image: np.ndarray) -> int:
    """The tick a (decoded, resized) clock crop shows."""
    grey = image.astype(float).mean(-1)
    w = grey.shape[1] / BITS
    bits = [grey[:, int(w * (j + 0.5))].mean() > 128 for j in range(BITS)]
    return sum(1 << j for j, b in enumerate(bits) if b) - BIAS


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """``mixed/``: camera a at 25 fps (20 frames, 0.8 s), camera b at 50 fps started
    ``B_OFFSET`` frames early (43 frames); ``same/``: two 25 fps cameras."""
    root = tmp_path_factory.mktemp("rig_fps")
    mixed = root / "mixed"
    mixed.mkdir()
    hf.write_video(str(mixed / "a.mp4"), [_clock(2 * i) for i in range(20)], fps=25)
    hf.write_video(str(mixed / "b.mp4"), [_clock(j - B_OFFSET) for j in range(43)], fps=50)
    (mixed / "sequence.json").write_text(json.dumps({"frame_offsets": {"b": B_OFFSET}}))
    same = root / "same"
    same.mkdir()
    for cam in ("a", "b"):
        hf.write_video(str(same / f"{cam}.mp4"), [_clock(2 * i) for i in range(12)], fps=25)
    return str(root)


def _config(root, **kw):
    return rig.RigConfig(root, crop="fixed", motion_threshold=0.0, image_size=CROP,
                         clip_length=16, **kw)


def _info(fps, frames, name="x"):
    return video.VideoInfo(f"/videos/{name}.mp4", SIDE, SIDE, frames, fps)


# ---------------------------------------------------------------------------- refusal


def test_mixed_rates_skipped_naming_cameras_and_rates(root):
    specs, skipped = rig.discover(_config(root))
    assert [s.name for s in specs] == ["same"]
    (s,) = skipped
    assert s.item == "mixed" and "\n" not in s.reason
    assert "cameras run at different frame rates (a 25 fps, b 50 fps" in s.reason
    assert "--resample_fps" in s.reason
    # The binary: nothing convertible is a one-line error naming the cameras and rates.
    code, _, err = cli.invoke("tfrecords_tools.rig", [
        f"--input_dir={root}", f"--output_dir={root}_out", "--sequences=mixed"])
    assert code == cli.DATA_EXIT and len(err.strip().splitlines()) == 1, err
    assert "mixed: cameras run at different frame rates (a 25 fps, b 50 fps" in err
    assert not os.path.exists(f"{root}_out")
    # --resample_fps accepts the sequence; --fps asserts one rate for every video.
    assert len(rig.discover(_config(root, resample_fps=25.0))[0]) == 2
    assert len(rig.discover(_config(root, fps=25.0))[0]) == 2
    code, _, err = cli.invoke("tfrecords_tools.rig", [
        f"--input_dir={root}", f"--output_dir={root}_out", "--resample_fps=0"])
    assert code == cli.USAGE_EXIT and "--resample_fps=0.0: expected a finite number > 0" in err, err


@pytest.mark.parametrize("rates, refused", [
    ((30.0, 29.97), True), ((25.0, 25.002), False), ((50.0, 25.0), True)])
def test_rate_tolerance(rates, refused):
    infos = [_info(r, 100, c) for r, c in zip(rates, "ab")]
    if refused:
        with pytest.raises(rig.RigError, match="different frame rates"):
            rig.sequence_timeline(_config("."), ["a", "b"], infos, {})
    else:
        tl = rig.sequence_timeline(_config("."), ["a", "b"], infos, {})
        np.testing.assert_array_equal(tl.frames, np.tile(np.arange(100)[:, None], (1, 2)))
        assert tl.fps == rates[0]


def test_offsets_and_durations_checked_against_the_rate():
    infos = [_info(25.0, 20, "a"), _info(50.0, 43, "b")]
    with pytest.raises(rig.RigError, match=r"frame_offsets\['b'\] = 43 is not smaller than the "
                                           r"video's 43 frames \(0.860 s at 50 fps\)"):
        rig.sequence_timeline(_config(".", resample_fps=25.0), ["a", "b"], infos, {"b": 43})
    # Equal durations after the offset (0.8 s and 40 / 50 s): nothing truncated.
    tl = rig.sequence_timeline(_config(".", resample_fps=25.0), ["a", "b"], infos, {"b": 3})
    assert tl.truncated is None and len(tl.frames) == 20
    # b runs 0.4 s longer: the common 0.8 s are used and the rest is named.
    infos[1] = _info(50.0, 63, "b")
    tl = rig.sequence_timeline(_config(".", resample_fps=25.0), ["a", "b"], infos, {"b": 3})
    (first, last), msg = tl.truncated
    assert (first, last, len(tl.frames)) == (20, 29, 20)
    assert ("'a': 20 frames at 25 fps = 0.800 s, 'b': 60 frames at 50 fps = 1.200 s" in msg
            and "common 20 timesteps (0.800 s)" in msg), msg
    # No frame rate anywhere; --fps overriding reported rates is a warning naming them.
    with pytest.raises(rig.RigError, match="a.mp4 reports no frame rate; pass --fps"):
        rig.sequence_timeline(_config("."), ["a", "b"], [_info(0.0, 20, "a"), infos[1]], {})
    tl = rig.sequence_timeline(_config(".", fps=25.0), ["a", "b"], infos, {})
    assert tl.warnings == ("--fps=25 overrides the frame rates the videos report (b 50 fps)",)


# ---------------------------------------------------------------------------- resampling


def test_resampled_records_show_one_instant_in_every_view(root, tmp_path):
    out = str(tmp_path / "out")
    code, stdout, err = cli.invoke("tfrecords_tools.rig", [
        f"--input_dir={root}", f"--output_dir={out}", "--sequences=mixed", "--crop=fixed",
        "--motion_threshold=0", f"--image_size={CROP}", "--resample_fps=25"])
    assert code == 0, err
    (clip,) = hf.read_clips(out)
    assert clip.fps == 25.0 and clip.camera_ids == ["a", "b"]
    np.testing.assert_array_equal(clip.frame_index, np.arange(20))
    ticks = np.array([[_read_clock(hf.decode(clip.images[t][v])) for v in range(2)]
                      for t in range(len(clip.frame_index))])
    # Timestep k is time k / 25 s = 50 fps tick 2k, in both views.
    np.testing.assert_array_equal(ticks, np.tile(2 * clip.frame_index[:, None], (1, 2)))


def test_upsampling_repeats_the_nearest_frame(root):
    config = _config(root, sequences=("mixed",), resample_fps=50.0)
    (spec,), _ = rig.discover(config)
    items = list(rig.produce_sequence((config, spec)))
    clips = [i for i in items if isinstance(i, schema.Clip)]
    assert not [i for i in items if not isinstance(i, schema.Clip)], items
    k = np.concatenate([c.frame_index for c in clips])
    np.testing.assert_array_equal(k, np.arange(39))  # a's last frame, time 0.76 s, is k = 38
    ticks = np.array([[_read_clock(cv2.imdecode(np.frombuffer(im, np.uint8), cv2.IMREAD_COLOR))
                       for im in step] for c in clips for step in c.images])
    np.testing.assert_array_equal(ticks[:, 1], k)  # b: 50 fps, every frame once
    # a (25 fps): nearest frame floor(k / 2 + 0.5), ties to the later; half a frame off at most.
    np.testing.assert_array_equal(ticks[:, 0], 2 * np.floor(k / 2 + 0.5))
    assert all(c.fps == 50.0 for c in clips)
