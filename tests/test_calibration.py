"""Calibration files as rigs write them (tfrecords_tools/calibration.py).

Each fixture is written here from the format's published description, from known
cameras; reading it back must project known 3D points where cv2.projectPoints puts them
with the true cameras.
"""
import json
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests import h36m_fixtures as hf
from tfrecords_tools import calibration, cameras, rig
from tfrecords_tools.runtime import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOL_PX = 0.5


def _look_at(centre, target=(0, 0, 900), up=(0, 0, 1)) -> np.ndarray:
    """World -> OpenCV camera rotation of a camera at ``centre`` looking at ``target``."""
    z = np.subtract(target, centre, dtype=np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z])


def _truth() -> dict:
    """Two cameras: tilted and rolled, off-centre principal points, real distortion."""
    out = {}
    specs = {"28496": ((3800.0, -2500.0, 1900.0), 0.08, (1510.0, 1495.0, 1003.7, 521.3),
                       (1920, 1080), (-0.21, 0.11, 0.0012, -0.0008, -0.02)),
             "28497": ((-3100.0, 2900.0, 2400.0), -0.15, (1250.0, 1262.0, 655.2, 470.9),
                       (1280, 960), (0.16, -0.09, -0.0015, 0.0021, 0.01))}
    for name, (centre, roll, (fx, fy, cx, cy), (w, h), dist) in specs.items():
        c, s = np.cos(roll), np.sin(roll)
        rotation = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ _look_at(centre)
        out[name] = cameras.Camera(name, fx, fy, cx, cy, w, h, rotation,
                                   -rotation @ np.array(centre), np.array(dist))
    return out


TRUTH = _truth()
POINTS = np.random.default_rng(0).uniform([-1400, -1400, 0], [1400, 1400, 2000], (50, 3))


def _cv_project(cam: cameras.Camera, points=POINTS) -> np.ndarray:
    rvec = cv2.Rodrigues(cam.rotation)[0]
    uv, _ = cv2.projectPoints(points.reshape(-1, 1, 3), rvec, cam.translation.reshape(3, 1),
                              cam.matrix, cam.distortion)
    return uv.reshape(-1, 2)


def _assert_projects_like_truth(cams: dict, names=None):
    names = names or {n: n for n in TRUTH}
    assert sorted(cams) == sorted(names.values()), sorted(cams)
    for true_name, name in names.items():
        truth, cam = TRUTH[true_name], cams[name]
        assert (cam.width, cam.height) == (truth.width, truth.height)
        err = np.abs(cam.project(POINTS) - _cv_project(truth)).max()
        assert err < TOL_PX, (name, err)


def test_truth_is_a_fair_test():
    """The fixture points are in view, and distortion moves them by pixels (so a reader
    that dropped or misordered it would fail)."""
    for cam in TRUTH.values():
        uv = _cv_project(cam)
        assert np.all(cam.world_to_camera(POINTS)[:, 2] > 1000)
        assert np.all((uv > 0) & (uv < [cam.width, cam.height]))
        undistorted = _cv_project(cam.__class__(**{**cam.__dict__, "distortion": np.zeros(5)}))
        assert np.abs(undistorted - uv).max() > 5
        np.testing.assert_allclose(cam.project(POINTS), uv, atol=1e-6)  # Camera = OpenCV


# ---------------------------------------------------------------------------- writers
# Each writes the format as its description says, from the true OpenCV cameras.


def _r(v) -> str:
    return repr(float(v))


def _fmt(a) -> str:
    return ", ".join(repr(float(x)) for x in np.ravel(a))


def write_qca(path, cams=TRUTH, factor=64, window=(40, 24), extra="") -> str:
    """QTM export: sub-pixel intrinsics, principal point on the sensor (the video is the
    fov_video window at offset ``window``), camera centre + rotation with QTM's axes
    (y up, looking along -z): the file's r_ij form M = diag(1, -1, -1) R."""
    rows = []
    for name, c in cams.items():
        left, top = window
        sensor_w, sensor_h = c.width + 2 * left, c.height + 2 * top
        m = np.diag([1.0, -1.0, -1.0]) @ c.rotation
        x, y, z = c.centre
        r = " ".join(f'r{i + 1}{j + 1}="{_r(m[i, j])}"' for i in range(3) for j in range(3))
        k1, k2, p1, p2, k3 = c.distortion
        rows.append(f"""
    <camera active="1" avg-residual="0.31" serial="{name}" model="Miqus Video" viewrotation="0">
      <fov_marker left="0" top="0" right="{sensor_w - 1}" bottom="{sensor_h - 1}"/>
      <fov_marker_max left="0" top="0" right="{sensor_w - 1}" bottom="{sensor_h - 1}"/>
      <fov_video left="{left}" top="{top}" right="{left + c.width - 1}"
        bottom="{top + c.height - 1}"/>
      <fov_video_max left="0" top="0" right="{sensor_w - 1}" bottom="{sensor_h - 1}"/>
      <transform x="{_r(x)}" y="{_r(y)}" z="{_r(z)}" {r}/>
      <intrinsic focallength="6.0" sensorMinU="0" sensorMaxU="{(sensor_w - 1) * factor}"
        sensorMinV="0" sensorMaxV="{(sensor_h - 1) * factor}"
        focalLengthU="{_r(c.fx * factor)}" focalLengthV="{_r(c.fy * factor)}"
        centerPointU="{_r((c.cx + left) * factor)}" centerPointV="{_r((c.cy + top) * factor)}"
        skew="0" radialDistortion1="{_r(k1)}" radialDistortion2="{_r(k2)}"
        radialDistortion3="{_r(k3)}" tangentalDistortion1="{_r(p1)}"
        tangentalDistortion2="{_r(p2)}"/>
    </camera>""")
    text = (f'<?xml version="1.0" encoding="UTF-8"?>\n<calibration source="cal.qca" '
            f'type="regular" wandLength="601.1">\n  <results std-dev="0.4"/>\n  <cameras>'
            f'{"".join(rows)}{extra}\n  </cameras>\n</calibration>\n')
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def write_toml(path, cams=TRUTH, scale=1e-3) -> str:
    """Anipose: [cam_N] name, size, matrix, distortions, Rodrigues rotation, translation."""
    text = ""
    for i, (name, c) in enumerate(cams.items()):
        text += (f'[cam_{i}]\nname = "{name}"\nsize = [ {c.width}, {c.height},]\n'
                 f"matrix = [ [ {c.fx!r}, 0.0, {c.cx!r},], [ 0.0, {c.fy!r}, {c.cy!r},], "
                 f"[ 0.0, 0.0, 1.0,],]\ndistortions = [ {_fmt(c.distortion)},]\n"
                 f"rotation = [ {_fmt(cv2.Rodrigues(c.rotation)[0])},]\n"
                 f"translation = [ {_fmt(c.translation * scale)},]\n\n")
    text += "[metadata]\nadjusted = false\nerror = 0.42\n"
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _yaml_matrix(a) -> str:
    a = np.atleast_2d(a)
    return (f"!!opencv-matrix\n      rows: {a.shape[0]}\n      cols: {a.shape[1]}\n"
            f"      dt: d\n      data: [ {_fmt(a)} ]")


def _yaml_camera(c: cameras.Camera, indent: str = "") -> str:
    fields = {"image_width": c.width, "image_height": c.height,
              "camera_matrix": _yaml_matrix(c.matrix),
              "distortion_coefficients": _yaml_matrix(c.distortion[None]),
              "rvec": _yaml_matrix(cv2.Rodrigues(c.rotation)[0]),
              "tvec": _yaml_matrix(c.translation[:, None])}
    return "".join(f"{indent}{k}: {v}\n".replace("\n      ", "\n" + indent + "      ")
                   for k, v in fields.items())


def write_opencv_yaml(path, cams=TRUTH) -> str:
    """FileStorage YAML, one named map per camera (keys start with a letter: cam_<name>)."""
    text = "%YAML:1.0\n---\n" + "".join(f"cam_{name}:\n{_yaml_camera(c, '   ')}"
                                        for name, c in cams.items())
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def _xml_matrix(tag, a) -> str:
    a = np.atleast_2d(a)
    return (f'<{tag} type_id="opencv-matrix"><rows>{a.shape[0]}</rows><cols>{a.shape[1]}'
            f"</cols><dt>d</dt><data>{' '.join(repr(float(x)) for x in a.ravel())}</data>"
            f"</{tag}>")


def write_opencv_xml(path, cam: cameras.Camera) -> str:
    """FileStorage XML, one camera per file (the file stem names it): 3x3 R, T."""
    text = ('<?xml version="1.0"?>\n<opencv_storage>\n'
            f"<image_width>{cam.width}</image_width>\n<image_height>{cam.height}"
            f"</image_height>\n{_xml_matrix('camera_matrix', cam.matrix)}\n"
            f"{_xml_matrix('dist_coeffs', cam.distortion[None])}\n"
            f"{_xml_matrix('R', cam.rotation)}\n{_xml_matrix('T', cam.translation[:, None])}\n"
            "</opencv_storage>\n")
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def write_h36m(path, cams=TRUTH) -> str:
    """Human3.6M style: R, camera centre T (first camera) or translation t (second), f, c,
    radial k (k1, k2, k3) and tangential p (p1, p2), column vectors as in the release."""
    out = {}
    for i, (name, c) in enumerate(cams.items()):
        k1, k2, p1, p2, k3 = c.distortion
        d = {"R": c.rotation.tolist(), "f": [[c.fx], [c.fy]], "c": [[c.cx], [c.cy]],
             "k": [[k1], [k2], [k3]], "p": [[p1], [p2]], "width": c.width, "height": c.height}
        d.update({"T": c.centre[:, None].tolist()} if i == 0 else {"t": c.translation.tolist()})
        out[name] = d
    with open(path, "w") as f:
        json.dump(out, f)
    return str(path)


def write_json(path, cams=TRUTH) -> str:
    with open(path, "w") as f:
        json.dump(calibration.to_json(cams), f)
    return str(path)


# ---------------------------------------------------------------------------- round trips


def test_qca_round_trip(tmp_path, caplog):
    inactive = ('\n    <camera active="0" serial="999" viewrotation="0"><fov_video left="0" '
                'top="0" right="0" bottom="0"/></camera>')
    path = write_qca(tmp_path / "session.qca.txt", extra=inactive)
    assert calibration.detect_format(path) == "qca"
    with caplog.at_level(logging.WARNING):
        cams = calibration.load(path)
    _assert_projects_like_truth(cams)  # the inactive camera is left out
    assert "behind" not in caplog.text
    # The sub-pixel factor comes from the sensor extents, not a constant.
    cams32 = calibration.load(write_qca(tmp_path / "b.qca", factor=32))
    _assert_projects_like_truth(cams32)


def test_qca_with_the_wrong_axis_convention_is_flagged(tmp_path, caplog):
    """Written with OpenCV's axes instead of QTM's, the cameras look away from the volume."""
    flip = np.diag([1.0, -1, -1])
    flipped = {n: c.__class__(**{**c.__dict__, "rotation": flip @ c.rotation,
                                 "translation": flip @ c.translation})  # same centre
               for n, c in TRUTH.items()}
    path = write_qca(tmp_path / "flipped.qca.txt", cams=flipped)
    with caplog.at_level(logging.WARNING):
        cams = calibration.load(path)
    assert "world origin is behind cameras ['28496', '28497']" in caplog.text
    assert np.abs(cams["28496"].project(POINTS) - _cv_project(TRUTH["28496"])).max() > 100


def test_toml_round_trip_and_units(tmp_path, caplog):
    path = write_toml(tmp_path / "calibration.toml")  # metres, as Pose2Sim writes
    with caplog.at_level(logging.INFO):
        cams = calibration.load(path)
    _assert_projects_like_truth(cams)
    assert "reading the translations as metres" in caplog.text
    mm = calibration.load(write_toml(tmp_path / "mm.toml", scale=1.0))  # board in mm
    _assert_projects_like_truth(mm)
    forced = calibration.load(path, units="mm")  # the override wins over the heuristic
    np.testing.assert_allclose(forced["28496"].translation, TRUTH["28496"].translation * 1e-3)


def test_opencv_yaml_and_xml_round_trip(tmp_path):
    _assert_projects_like_truth(calibration.load(write_opencv_yaml(tmp_path / "cams.yml")),
                                {n: f"cam_{n}" for n in TRUTH})
    folder = tmp_path / "per_camera"
    folder.mkdir()
    for name, cam in TRUTH.items():
        write_opencv_xml(folder / f"{name}.xml", cam)
    assert calibration.detect_format(str(folder / "28496.xml")) == "opencv"
    _assert_projects_like_truth(calibration.load(str(folder)))
    one = calibration.load(str(folder / "28497.xml"))
    assert list(one) == ["28497"]


def test_opencv_easymocap_split_files(tmp_path):
    """names + K_<n>/dist_<n> in one file, R_<n> (Rodrigues)/T_<n> in another (a folder)."""
    intri, extri = "%YAML:1.0\n---\nnames:\n  - \"28496\"\n  - \"28497\"\n", "%YAML:1.0\n---\n"
    for name, c in TRUTH.items():
        intri += (f"K_{name}: {_yaml_matrix(c.matrix)}\ndist_{name}: "
                  f"{_yaml_matrix(c.distortion[None])}\n")
        extri += (f"R_{name}: {_yaml_matrix(cv2.Rodrigues(c.rotation)[0])}\n"
                  f"T_{name}: {_yaml_matrix(c.translation[:, None] / 1000)}\n")
    extri = extri.replace("---\n", "---\nnames:\n  - \"28496\"\n  - \"28497\"\n", 1)
    folder = tmp_path / "easymocap"
    folder.mkdir()
    (folder / "intri.yml").write_text(intri)
    (folder / "extri.yml").write_text(extri)
    with pytest.raises(calibration.CalibrationError, match="'28496' lacks image_width"):
        calibration.load(str(folder))  # no image size: refused, naming camera and field
    sized = intri.replace("---\n", "---\nimage_width: 1920\nimage_height: 1080\n", 1)
    (folder / "intri.yml").write_text(sized)
    cams = calibration.load(str(folder))  # metres (auto)
    assert (cams["28496"].width, cams["28496"].height) == (1920, 1080)
    err = np.abs(cams["28496"].project(POINTS) - _cv_project(TRUTH["28496"])).max()
    assert err < TOL_PX


def test_h36m_json_round_trip(tmp_path):
    path = write_h36m(tmp_path / "cameras.json")
    assert calibration.detect_format(path) == "h36m"
    _assert_projects_like_truth(calibration.load(path))


def test_h36m_json_matches_the_release_module(tmp_path):
    """The release's own conventions (h36m_calibration) and this reader agree on S9."""
    from tfrecords_tools import h36m_calibration
    cam = h36m_calibration.camera("S9", "60457274")
    k1, k2, p1, p2, k3 = cam.distortion
    with open(tmp_path / "h36m.json", "w") as f:
        json.dump({"cameras": {"60457274": {
            "R": cam.rotation.tolist(), "T": cam.centre.tolist(), "f": [cam.fx, cam.fy],
            "c": [cam.cx, cam.cy], "k": [k1, k2, k3], "p": [p1, p2]}}}, f)
    read = calibration.load(str(tmp_path / "h36m.json"))["60457274"]
    assert (read.width, read.height) == (1000, 1002)  # the release's frame size
    np.testing.assert_allclose(read.project(POINTS), cam.project(POINTS), atol=1e-6)


def test_project_json_round_trip(tmp_path):
    path = write_json(tmp_path / "calibration.json")
    assert calibration.detect_format(path) == "json"
    _assert_projects_like_truth(calibration.load(path))


@pytest.mark.parametrize("name, head, expected", [
    ("cams.xml", "<?xml version='1.0'?>\n<calibration>\n <cameras/>", "qca"),
    ("cams.xml", "<?xml version='1.0'?>\n<opencv_storage>\n</opencv_storage>", "opencv"),
    ("cams.txt", "<calibration created='x'><cameras/>", "qca"),
    ("cams", "%YAML:1.0\n---\nK: 1\n", "opencv"),
    ("cams.cfg", "[cam_0]\nname = 'a'\n", "toml"),
])
def test_format_detection_by_content(tmp_path, name, head, expected):
    (tmp_path / name).write_text(head)
    assert calibration.detect_format(str(tmp_path / name)) == expected


def test_unknown_or_unreadable_files_are_one_line_errors(tmp_path):
    (tmp_path / "a.dat").write_text("hello")
    with pytest.raises(calibration.CalibrationError, match="unknown calibration format"):
        calibration.load(str(tmp_path / "a.dat"))
    (tmp_path / "b.yml").write_text("%YAML:1.0\n---\nK: [1, 2\n")
    with pytest.raises(calibration.CalibrationError, match="b.yml: not a readable OpenCV"):
        calibration.load(str(tmp_path / "b.yml"))
    (tmp_path / "c.toml").write_text("[cam_0\n")
    with pytest.raises(calibration.CalibrationError, match="c.toml: not a readable TOML"):
        calibration.load(str(tmp_path / "c.toml"))
    (tmp_path / "fish.toml").write_text(open(write_toml(tmp_path / "t.toml")).read()
                                        .replace('name = "28497"', 'name = "28497"\n'
                                                 'fisheye = true'))
    with pytest.raises(calibration.CalibrationError, match="'28497' fisheye=true"):
        calibration.load(str(tmp_path / "fish.toml"))


# ---------------------------------------------------------------------------- validation


def test_non_orthonormal_rotation_names_camera_and_field(tmp_path):
    bad = dict(TRUTH)
    bad["28497"] = bad["28497"].__class__(**{**bad["28497"].__dict__,
                                             "rotation": bad["28497"].rotation * 1.01})
    with pytest.raises(calibration.CalibrationError) as e:
        calibration.load(write_qca(tmp_path / "r.qca.txt", cams=bad))
    message = str(e.value)
    assert "r.qca.txt: camera '28497' rotation is not a rotation matrix" in message
    assert "\n" not in message


def test_negative_focal_names_camera_and_field(tmp_path):
    text = open(write_toml(tmp_path / "t.toml")).read()
    fx = repr(TRUTH["28496"].fx)
    (tmp_path / "neg.toml").write_text(text.replace(f"[ {fx},", f"[ -{fx},", 1))
    with pytest.raises(calibration.CalibrationError,
                       match=r"neg.toml: camera '28496' fx=-1510.0: expected a positive"):
        calibration.load(str(tmp_path / "neg.toml"))


def test_image_size_scaled_consistently_or_refused():
    cam = TRUTH["28496"]
    half = calibration.fit_to_image(cam, 960, 540, "v.mp4")
    # Pixel centres at integers: u_small = (u + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(half.project(POINTS), (_cv_project(cam) + 0.5) / 2 - 0.5,
                               atol=1e-6)
    assert calibration.fit_to_image(cam, 1920, 1080, "v.mp4") is cam
    with pytest.raises(calibration.CalibrationError) as e:
        calibration.fit_to_image(cam, 1920, 1200, "v.mp4")
    assert ("v.mp4: camera '28496' width x height: calibrated for 1920x1080 but the video is "
            "1920x1200") in str(e.value)


def test_unmatched_camera_names_are_listed_both_ways():
    got = calibration.match_cameras(TRUTH, ["Walk_Miqus_1_28496", "28497"], "c.qca")
    assert {k: v.camera_id for k, v in got.items()} == {"Walk_Miqus_1_28496": "28496",
                                                         "28497": "28497"}
    with pytest.raises(calibration.CalibrationError) as e:
        calibration.match_cameras(TRUTH, ["28496", "cam_left", "x284970"], "c.qca")
    message = str(e.value)
    assert "videos ['cam_left', 'x284970'] have no camera in c.qca" in message
    assert "unmatched calibration cameras: ['28497']" in message
    with pytest.raises(calibration.CalibrationError, match="several videos match cameras"):
        calibration.match_cameras(TRUTH, ["a_28496", "b_28496"], "c.qca")


def test_json_errors_name_the_field(tmp_path):
    cams = calibration.to_json(TRUTH)
    cams["cameras"]["28496"]["translation"] = [1, 2]
    with open(tmp_path / "c.json", "w") as f:
        json.dump(cams, f)
    with pytest.raises(calibration.CalibrationError,
                       match=r"camera '28496' 'translation' has shape \[2\], expected \[3\]"):
        calibration.load(str(tmp_path / "c.json"))


@pytest.mark.parametrize("field,value,message", [
    ("distortions", '"none"', r"'distortions' is not numeric"),
    ("rotation", '"eye"', r"'rotation' is not numeric"),
    ("matrix", "[[nan, 0.0, 32.0], [0.0, 500.0, 24.0], [0.0, 0.0, 1.0]]",
     r"'matrix' holds NaN or inf \(\[\[nan"),
    ("matrix", "[[500.0, 0.0, 32.0], [0.0, 500.0, 24.0]]",
     r"'matrix' has shape \[2, 3\], expected \[3, 3\]"),
])
def test_toml_values_of_the_wrong_type_or_shape_name_the_field(tmp_path, field, value, message):
    # Found by the independent probe: text where numbers belong was a bare ValueError, and a
    # NaN in a 3x3 matrix said "has shape [3, 3], expected [3, 3]".
    text = open(write_toml(tmp_path / "good.toml")).read().split("\n")
    first = next(i for i, line in enumerate(text) if line.startswith(f"{field} ="))
    text[first] = f"{field} = {value}"
    (tmp_path / "c.toml").write_text("\n".join(text))
    with pytest.raises(calibration.CalibrationError, match=f"c.toml: camera .* {message}"):
        calibration.load(str(tmp_path / "c.toml"))


# ---------------------------------------------------------------------------- binary


def test_converter_writes_calibration_json(tmp_path):
    src = write_qca(tmp_path / "rig.qca.txt")
    out = tmp_path / "calibration.json"
    code, stdout, err = cli.invoke("tfrecords_tools.calibration",
                                   [f"--input={src}", f"--output={out}"])
    assert code == 0, err
    assert "wrote 2 cameras ['28496', '28497']" in stdout
    assert calibration.detect_format(str(out)) == "json"
    _assert_projects_like_truth(calibration.load(str(out)))
    assert [p for p in os.listdir(tmp_path) if ".tmp" in p] == []
    code, _, err = cli.invoke("tfrecords_tools.calibration",
                              [f"--input={src}", f"--output={out}", "--format=toml"])
    assert code == cli.USAGE_EXIT and "not a readable TOML" in err


def test_converter_has_the_binary_shape(tmp_path):
    """define_flags/main like every binary; a stray argument is a usage error."""
    code, _, err = cli.invoke("tfrecords_tools.calibration",
                              [f"--input={tmp_path}", f"--output={tmp_path}/o.json", "stray"])
    assert code == cli.USAGE_EXIT and "'stray'" in err and os.listdir(tmp_path) == []
    code, _, err = cli.invoke("tfrecords_tools.calibration", [f"--output={tmp_path}/o.json"])
    assert code == cli.USAGE_EXIT and "--input" in err


def test_converter_bad_file_is_one_line_and_exit_2(tmp_path):
    text = open(write_qca(tmp_path / "a.qca.txt")).read()
    (tmp_path / "bad.qca.txt").write_text(text.replace('focalLengthV="', 'focalLengthV="-', 1))
    out = subprocess.run([sys.executable, "-m", "tfrecords_tools.calibration",
                          f"--input={tmp_path / 'bad.qca.txt'}",
                          f"--output={tmp_path / 'o.json'}"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("calibration: error: --input: ")
    assert "camera '28496' fy=" in lines[0] and "positive finite focal length" in lines[0]
    assert not (tmp_path / "o.json").exists()


# ---------------------------------------------------------------------------- rig


def _tiny_sequence(folder, names, size=(64, 48), frames=8, seed=0):
    """Videos of moving noise (crop=fixed, no motion filter: no person needed)."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        video = rng.integers(0, 255, (frames, size[1], size[0], 3)).astype(np.uint8)
        hf.write_video(os.path.join(folder, f"{name}.mp4"), video, fps=25)


def test_rig_reads_any_format_and_sequence_files_override(tmp_path):
    root = tmp_path / "rig"
    # QTM names its videos <take>_<camera type>_<index>_<serial>; the calibration is 2x larger.
    small = {n: c.__class__(**{**c.__dict__, "width": 128, "height": 96, "fx": c.fx / 15,
                               "fy": c.fy / 15, "cx": 60.5, "cy": 50.25})
             for n, c in TRUTH.items()}
    _tiny_sequence(root / "walk", ["walk_Miqus_1_28496", "walk_Miqus_2_28497"])
    _tiny_sequence(root / "jump", ["28496", "28497"], seed=1)
    toml = write_toml(tmp_path / "calibration.toml", cams=small)
    override = {n: c.__class__(**{**c.__dict__, "width": 64, "height": 48, "cx": 30.0})
                for n, c in small.items()}
    write_qca(root / "jump" / "jump.qca.txt", cams=override)
    out = tmp_path / "out"
    code, stdout, err = cli.invoke("tfrecords_tools.rig", [
        f"--input_dir={root}", f"--output_dir={out}", f"--calibration={toml}",
        "--crop=fixed", "--motion_threshold=0", "--image_size=32", "--clip_length=8"])
    assert code == 0, err
    with open(out / "manifest.json") as f:
        assert json.load(f)["skipped"] == []
    clips = {c.sequence_id: c for c in hf.read_clips(str(out))}
    walk, jump = clips["rig/walk"], clips["rig/jump"]
    assert walk.camera_ids == jump.camera_ids == ["28496", "28497"]
    for v, name in enumerate(walk.camera_ids):
        stored, truth = hf.stored_camera(walk, v), small[name]
        # The 128x96 calibration scaled to the 64x48 videos (pixel centres at integers).
        np.testing.assert_allclose(stored.intrinsics, [truth.fx / 2, truth.fy / 2,
                                                       (truth.cx + 0.5) / 2 - 0.5,
                                                       (truth.cy + 0.5) / 2 - 0.5], rtol=1e-5)
        np.testing.assert_allclose(stored.translation, truth.translation, rtol=1e-5)
        np.testing.assert_allclose(stored.rotation, truth.rotation, atol=1e-6)
        np.testing.assert_allclose(hf.stored_camera(jump, v).cx, 30.0)  # the override

    # A video of another aspect ratio than its calibration: that sequence is skipped,
    # naming camera and both sizes, before any work.
    _tiny_sequence(root / "wide", ["28496", "28497"], size=(64, 32), seed=2)
    specs, skipped = rig.discover(rig.RigConfig(str(root), calibration=toml))
    assert sorted(s.name for s in specs) == ["jump", "walk"]
    (reason,) = [s.reason for s in skipped if s.item == "wide"]
    assert "camera '28496' width x height: calibrated for 128x96 but the video is 64x32" in reason
    with pytest.raises(rig.RigError, match="^--calibration .*missing.toml: no such"):
        rig.discover(rig.RigConfig(str(root), calibration=str(tmp_path / "missing.toml")))
    # Without the flag, a supported file at the top of the rig folder is shared.
    os.rename(toml, root / "calibration.toml")
    specs, _ = rig.discover(rig.RigConfig(str(root)))
    walk_spec = next(s for s in specs if s.name == "walk")
    assert [c.camera_id for _, c in walk_spec.calibration] == ["28496", "28497"]
