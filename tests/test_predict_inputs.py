"""Predict's inputs without a model: frame sources, person boxes, the progress line."""
import io

import cv2
import numpy as np
import pytest

from tf_synchro import configs
from tf_synchro.deploy import boxes, sources
from tfrecords_tools.runtime import progress


def _config(tmp_path, **kw):
    return configs.make(configs.PredictConfig,
                        dict(model=str(tmp_path), output=str(tmp_path / "p.json"), **kw))


def _images(folder, sizes):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (w, h) in enumerate(sizes):
        cv2.imwrite(str(folder / f"img_{i:02d}.png"), rng.integers(0, 255, (h, w, 3), np.uint8))
    return str(folder)


def test_an_image_source_is_a_frame_source_read_at_any_indices(tmp_path):
    source = sources.open_images(_images(tmp_path / "f", [(12, 10)] * 4))
    assert (source.num_frames, source.width, source.height) == (4, 12, 10)
    every = list(source.frames())
    picked = list(source.frames([1, 3]))
    assert len(every) == 4 and every[0].shape == (10, 12, 3)
    np.testing.assert_array_equal(picked[0], every[1])
    np.testing.assert_array_equal(picked[1], every[3])


def test_file_boxes_become_squares_of_the_same_centre(tmp_path):
    folder = _images(tmp_path / "f", [(40, 30)] * 2)
    path = tmp_path / "boxes.csv"
    path.write_text("x0,y0,x1,y1\n2,4,12,8\n5,5,9,15\n")
    found, flags, where = boxes.person_boxes(sources.open_images(folder),
                                             _config(tmp_path, boxes=str(path)))
    # Centre kept, side = the longer side: (7, 6) side 10; (7, 10) side 10.
    np.testing.assert_array_equal(found, [[2, 1, 12, 11], [2, 5, 12, 15]])
    assert flags.tolist() == [True, True] and where == "file"


def test_without_a_person_the_box_is_the_padded_whole_frame(tmp_path):
    folder = _images(tmp_path / "f", [(20, 12), (12, 17)])
    found, flags, where = boxes.person_boxes(
        sources.open_images(folder), _config(tmp_path, static_camera=False))
    # Pixel centres 0..19 x 0..11: a 20-pixel square, padded by 4 above and below.
    np.testing.assert_array_equal(found, [[0, -4, 19, 15], [-2.5, 0, 13.5, 16]])
    assert flags.tolist() == [False, False] and where == "whole_frame"


def test_a_bad_box_file_is_one_predict_error(tmp_path):
    path = tmp_path / "b.json"
    path.write_text("[[0, 0, 4, 4], [5, 5, 3, 9]]")
    with pytest.raises(sources.PredictError, match=r"box 1 .* x1 > x0"):
        boxes.load_boxes(str(path), 2)


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_progress_line_redraws_on_a_terminal_and_ends_the_line():
    log, tty = io.StringIO(), _Tty()
    for stream in (log, tty):
        progress.draw(stream, "frame", 3, 10, "2.0 frames/s", 3.5)
        progress.draw(stream, "frame", 10, 10, "2.0 frames/s", 0.0, " lr=1")
    first = "frame 3/10 [=========.....................] 2.0 frames/s ETA 4s"
    last = "frame 10/10 [==============================] 2.0 frames/s ETA 0s lr=1\n"
    assert log.getvalue() == first + "\n" + last
    assert tty.getvalue() == first + "\r" + last
