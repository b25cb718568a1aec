"""The main job end to end at the tiny scale, and the experiments runner's resume."""
import json
import os
import shutil

import pytest

from tf_synchro import demo
from tf_synchro import experiment_lib as xl
from tf_synchro import experiments

ROWS = os.path.join(xl.REPO, "flags", "table1")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("demo"))
    out = demo.run(workdir, "tiny", 0, "flags/table1/b_random_init_no_background.flags",
                   "flags/table1/d_ssl_no_background.flags", log=lambda s: None)
    return workdir, out


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_demo_produces_every_artefact(demo_run):
    workdir, out = demo_run
    report = open(out["report"]).read()
    # The table has both rows with three measured numbers and the paper's.
    for row, paper in (("b", "165.5"), ("d", "104.9")):
        line = next(l for l in report.splitlines() if l.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(float(c) > 0 for c in cells[2:5]), line
        assert cells[5] == paper
    assert "MPJPE ratio pre-trained / random init" in report
    for name in ("curves.png", "sync_vs_gap.png", "examples_scratch.png",
                 "examples_pretrained.png"):
        assert _png(os.path.join(workdir, name)), name
        assert f"({name})" in report
    assert os.path.exists(os.path.join(out["export"], "saved_model.pb"))
    assert out["ratio"] == pytest.approx(out["results"]["pretrained"]["measured"][0]
                                         / out["results"]["scratch"]["measured"][0])


def test_training_curves_are_read_from_tensorboard(demo_run):
    workdir, out = demo_run
    plan = xl.plan_row(xl.load_row(os.path.join(ROWS, "d_ssl_no_background.flags")), "tiny")
    scalars = demo.read_scalars(plan.pretrain.path(workdir))
    losses = [k for k in scalars if "loss" in k]
    assert losses, sorted(scalars)
    assert all(len(scalars[k]) >= 2 for k in losses)


def test_rerun_reuses_every_stage(demo_run):
    workdir, _ = demo_run
    lines = []
    demo.run(workdir, "tiny", 0, "flags/table1/b_random_init_no_background.flags",
             "flags/table1/d_ssl_no_background.flags", log=lines.append)
    started = [l for l in lines if ": " in l and "-m " in l]
    assert not started, started
    assert sum("reusing finished" in l for l in lines) >= 6


def test_workdir_with_other_settings_is_refused(demo_run):
    workdir, _ = demo_run
    with pytest.raises(demo.WorkdirError, match="different settings"):
        demo.run(workdir, "tiny", 1, "flags/table1/b_random_init_no_background.flags",
                 "flags/table1/d_ssl_no_background.flags", log=lambda s: None)


def test_experiments_resume_a_partly_finished_suite(demo_run, tmp_path):
    workdir, _ = demo_run
    suite = tmp_path / "suite"
    suite.mkdir()
    for name in ("b_random_init_no_background.flags", "d_ssl_no_background.flags"):
        shutil.copy(os.path.join(ROWS, name), suite / name)
    # A row the demo did not run: random init with two labelled subjects.
    (suite / "x_scratch_two_subjects.flags").write_text(
        "--row=x\n--title=random init, S1+S5 labels\n--init=scratch\n--label_subjects=S1,S5\n")
    lines = []
    results = experiments.run_suite(str(suite), workdir, "tiny", log=lines.append)
    assert [r["row"] for r in results] == ["b", "d", "x"]
    reused = [l for l in lines if "reusing finished" in l]
    # b and d were finished by the demo: data, (pretrain), finetune, evaluate all reused;
    # x reuses the dataset and runs its own fine-tune and evaluation.
    assert len(reused) == 3 + 4 + 1
    assert any("[row x" in l and "finetune: " in l and "-m tf_synchro.finetune" in l
               for l in lines)
    table = open(os.path.join(workdir, "suite_tiny.md")).read()
    assert "| x | random init, S1+S5 labels |" in table
    saved = json.load(open(os.path.join(workdir, "suite_tiny.json")))
    assert [r["row"] for r in saved["rows"]] == ["b", "d", "x"]


def test_row_flagfiles_parse_and_shared_settings_share_stages():
    rows = {r.row: r for r in xl.suite_rows("table1")}
    assert sorted(rows) == list("abcdefghijklm")
    keys = {k: [s.key for s in xl.plan_row(rows[k], "cpu").stages()] for k in "dgkm"}
    assert keys["d"] == keys["g"] == keys["k"] == keys["m"]
    assert xl.plan_row(rows["e"], "cpu").pretrain.key != xl.plan_row(rows["d"], "cpu").pretrain.key
    assert xl.plan_row(rows["a"], "cpu").pretrain is None
    assert len(xl.suite_rows("table2")) == 4


def test_bad_row_flagfile_is_named(tmp_path):
    bad = tmp_path / "bad.flags"
    bad.write_text("--row=z\n--fusion=product\n")
    with pytest.raises(ValueError, match="bad.flags"):
        xl.load_row(str(bad))
