"""The main job end to end at the tiny scale, and the experiments runner's resume.

``demo_run`` is a session fixture (tests/conftest.py): the demo binary starts in the
background when collection ends and runs beside the other tests.
"""
import dataclasses
import json
import os

import pytest

from tf_synchro import demo, experiments, run_dir
from tf_synchro.suite import experiment_lib as xl

ROWS = os.path.join(xl.REPO, "flags", "table1")
TRAINABLE = "flags/baselines/b0_random_init_all_trainable.flags"


def _png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.large
def test_demo_produces_every_artefact(demo_run):
    workdir, out = demo_run
    report = open(out["report"]).read()
    # The table has both rows with three measured numbers and the paper's.
    for row, paper in (("b", "165.5"), ("d", "104.9")):
        line = next(l for l in report.splitlines() if l.startswith(f"| {row} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert all(float(c) > 0 for c in cells[2:5]), line
        assert cells[5] == paper
    assert "| random init (same frozen blocks) | **" in report  # the ratio table
    for name in ("curves.png", "sync_vs_gap.png", "examples_scratch.png",
                 "examples_pretrained.png"):
        assert _png(os.path.join(workdir, name)), name
        assert f"({name})" in report
    assert os.path.exists(os.path.join(out["export"], "saved_model.pb"))
    assert out["ratio"] == pytest.approx(out["results"]["pretrained"]["measured"][0]
                                         / out["results"]["scratch"]["measured"][0])


def _cells(report, row):
    line = next(l for l in report.splitlines() if l.startswith(f"| {row} |"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.large
def test_report_values_are_the_stage_outputs(demo_run):
    """Every number of the REPORT's table is the mean over actions of that row's eval.json
    (standard and unseen-motion test), and the ratios are computed from them."""
    workdir, out = demo_run
    report = open(out["report"]).read()
    rows = {"scratch": "b", "scratch_trainable": "b0", "pretrained": "d"}
    evals = {}
    for key, row in rows.items():
        stage = out["results"][key]["stages"]["evaluate"]
        with open(os.path.join(workdir, stage, xl.EVAL_JSON)) as f:
            evals[key] = json.load(f)
        cells = _cells(report, row)
        mean = evals[key]["mean_over_actions"]
        assert cells[2:5] == [f"{mean[m]:.1f}" for m in xl.METRICS], (row, cells)
        unseen = evals[key]["unseen_motion"]["mean_over_actions"]
        assert cells[8:10] == [f"{unseen['mpjpe']:.1f}", f"{unseen['pa_mpjpe']:.1f}"]
        # The per-action means average to the reported mean (not the frame mean).
        per_action = evals[key]["per_action"]
        assert mean["mpjpe"] == pytest.approx(
            sum(a["mpjpe"] for a in per_action.values()) / len(per_action))
    with open(os.path.join(workdir, out["results"]["pretrained"]["stages"]["pretrain"],
                           run_dir.PRETEXT_EVAL_FILE)) as f:
        pretext = json.load(f)
    assert _cells(report, "d")[10] == f"{pretext['sync_auc']:.2f} / {pretext['flip_auc']:.2f}"
    pre, base = evals["pretrained"], evals["scratch_trainable"]
    expected = pre["mean_over_actions"]["pa_mpjpe"] / base["mean_over_actions"]["pa_mpjpe"]
    assert out["ratios"]["pa_mpjpe_vs_scratch_trainable"] == pytest.approx(expected)
    line = next(l for l in report.splitlines() if l.startswith("| random init (all blocks"))
    assert f"**{expected:.2f}**" in line
    assert "unseen_mpjpe_vs_scratch" in out["ratios"]


@pytest.mark.large
def test_unseen_families_are_absent_from_every_training_dataset(demo_run):
    """Checked from the manifests the demo wrote, and from the plans of the CPU demo and the
    scaling suite: held-out motion families only ever belong to the test subjects, and no
    pre-training or fine-tuning stage reads a test subject."""
    from absl import flags as absl_flags
    from tfrecords_tools import dataset_io, synthesize
    from tfrecords_tools.synth import body, motion
    workdir, out = demo_run
    data = os.path.join(workdir, out["results"]["pretrained"]["stages"]["data"])
    manifest = dataset_io.load_manifest(data)
    unseen = set(manifest["settings"]["unseen_actions"])
    assert unseen and unseen <= set(motion.UNSEEN_ACTIONS)
    for shard in manifest["shards"]:
        subjects = set(shard["images_per"]["subject"])
        if set(shard["images_per"]["action"]) & unseen:
            assert subjects <= set(body.TEST_SUBJECTS), shard["file"]
    # The CPU-scale data stages (demo and scaling suite), planned, not run.
    plans = [xl.plan_row(r, "cpu") for r in xl.suite_rows("scaling")]
    plans.append(xl.plan_row(xl.load_row(os.path.join(ROWS, "d_ssl_no_background.flags")), "cpu"))
    for plan in plans:
        fv = absl_flags.FlagValues()
        synthesize.define_flags(fv)
        snapshot = os.path.join(str(workdir), "snap.flags")
        with open(snapshot, "w") as f:
            f.write(plan.data.flag_text)
        fv(["synthesize", f"--flagfile={snapshot}", *plan.data.args, "--output_dir=x"])
        config = synthesize.config_from_flags(fv)
        for subject in config.subjects:
            acts = set(synthesize.subject_actions(config, subject))
            if subject not in body.TEST_SUBJECTS:
                assert not acts & set(motion.UNSEEN_ACTIONS), (subject, acts)
        for stage, flag in ((plan.pretrain, "--train_subjects="),
                            (plan.finetune, "--label_subjects=")):
            if stage is None:
                continue
            given = [a for a in stage.flag_text.splitlines() + list(stage.args)
                     if a.startswith(flag)]
            names = given[-1][len(flag):].split(",") if given else []  # the last one wins
            assert not set(names) & set(body.TEST_SUBJECTS), (stage.name, names)


@pytest.mark.large
def test_training_curves_are_read_from_tensorboard(demo_run):
    workdir, out = demo_run
    plan = xl.plan_row(xl.load_row(os.path.join(ROWS, "d_ssl_no_background.flags")), "tiny")
    scalars = demo.read_scalars(plan.pretrain.path(workdir))
    losses = [k for k in scalars if "loss" in k]
    assert losses, sorted(scalars)
    assert all(len(scalars[k]) >= 2 for k in losses)


@pytest.mark.large
def test_rerun_reuses_every_stage(demo_run):
    workdir, _ = demo_run
    lines = []
    demo.run(workdir, "tiny", 0, "flags/table1/b_random_init_no_background.flags",
             "flags/table1/d_ssl_no_background.flags", log=lines.append,
             scratch_trainable_row=TRAINABLE)
    started = [l for l in lines if ": " in l and "-m " in l]
    assert not started, started
    assert sum("reusing finished" in l for l in lines) >= 8


@pytest.mark.large
def test_workdir_with_other_settings_is_refused(demo_run):
    workdir, _ = demo_run
    with pytest.raises(demo.WorkdirError, match="different settings"):
        demo.run(workdir, "tiny", 1, "flags/table1/b_random_init_no_background.flags",
                 "flags/table1/d_ssl_no_background.flags", log=lambda s: None,
                 scratch_trainable_row=TRAINABLE)


@pytest.mark.large
def test_experiments_resume_a_partly_finished_suite(demo_run, demo_suite_log):
    """A suite whose rows b and d the demo finished, and a row x it did not run (random init,
    S1+S5 labels): the experiments binary ran it in the demo's workdir, in the background
    after the demo (``demo_suite_log``, tests/conftest.py)."""
    workdir, _ = demo_run
    suite, lines = demo_suite_log
    reused = [l for l in lines if "reusing finished" in l]
    # b and d were finished by the demo: data, (pretrain), finetune, evaluate all reused;
    # x reuses the dataset and runs its own fine-tune and evaluation.
    assert len(reused) == 3 + 4 + 1, lines
    assert any("[row x" in l and "finetune: " in l and "-m tf_synchro.finetune" in l
               for l in lines)
    again = []
    results = experiments.run_suite(suite, workdir, "tiny", log=again.append)
    assert [r["row"] for r in results] == ["b", "d", "x"]
    assert not [l for l in again if "-m tf_synchro." in l]  # Now every stage is finished.
    table = open(os.path.join(workdir, f"{os.path.basename(suite)}_tiny.md")).read()
    assert "| x | random init, S1+S5 labels |" in table
    saved = json.load(open(os.path.join(workdir, f"{os.path.basename(suite)}_tiny.json")))
    assert [r["row"] for r in saved["rows"]] == ["b", "d", "x"]


def test_row_flagfiles_parse_and_shared_settings_share_stages():
    rows = {r.row: r for r in xl.suite_rows("table1")}
    assert sorted(rows) == list("abcdefghijklm")
    # At CPU scale the default pre-training uses difference fusion (flags/pretrain_synthetic
    # .flags), so rows d, g, j and m restate it and share every stage; k (multiply) does not.
    keys = {k: [s.key for s in xl.plan_row(rows[k], "cpu").stages()] for k in "dgjkm"}
    assert keys["d"] == keys["g"] == keys["j"] == keys["m"]
    for other in "ek":
        assert (xl.plan_row(rows[other], "cpu").pretrain.key
                != xl.plan_row(rows["d"], "cpu").pretrain.key)
    assert xl.plan_row(rows["a"], "cpu").pretrain is None
    assert len(xl.suite_rows("table2")) == 4


def test_real_motion_options_give_their_own_dataset_and_report_columns():
    row = xl.load_row(os.path.join(ROWS, "d_ssl_no_background.flags"))
    assert demo.real_motion_overrides(False, False) == {}
    values = demo.real_motion_overrides(True, False)
    assert values == {"test_motion_dir": demo.REAL_MOTION_TEST_DIR, "treadmill": True}
    assert demo.real_motion_overrides(True, True, 6)["labelled_extra_motions"] == 6
    assert "labelled_motion_only" not in demo.real_motion_overrides(True, True, 6)
    # Without the pool only the labelled subjects perform the pool's clips.
    assert demo.real_motion_overrides(True, False, 6) == {
        "test_motion_dir": demo.REAL_MOTION_TEST_DIR, "extra_motion_dir":
        demo.REAL_MOTION_POOL_DIR, "labelled_extra_motions": 6, "labelled_motion_only": True,
        "treadmill": True}
    assert demo.real_motion_overrides(False, False, 6, mirror=True)["extra_motion_mirror"]
    with pytest.raises(demo.app.UsageError, match="--real_motion_mirror mirrors"):
        demo.real_motion_overrides(True, False, 0, mirror=True)
    # --finetune_steps: every row's fine-tuning budget, nothing else.
    longer = demo.finetune_overrides({"d": row}, 2000)["d"]
    assert demo.finetune_overrides({"d": row}, 0)["d"] is row
    assert xl.plan_row(longer, "cpu").finetune.args[-1] == "--train_steps=2000"
    assert xl.plan_row(longer, "cpu").finetune.key != xl.plan_row(row, "cpu").finetune.key
    assert xl.plan_row(longer, "cpu").pretrain.key == xl.plan_row(row, "cpu").pretrain.key
    real = row.with_overrides("synthesize", demo.real_motion_overrides(True, True))
    assert xl.plan_row(real, "tiny").data.key != xl.plan_row(row, "tiny").data.key
    # The overrides reach the stage as the binary's flags, in the order given.
    assert xl.plan_row(real, "tiny").data.args == [
        "--background=false", f"--test_motion_dir={demo.REAL_MOTION_TEST_DIR}",
        f"--extra_motion_dir={demo.REAL_MOTION_POOL_DIR}", "--treadmill"]
    # The CPU data stage, parsed as the binary would: the held-out clips only for S9/S11,
    # the pool clips among the extra people's draws, the labelled subjects procedural.
    from absl import flags as absl_flags
    from tfrecords_tools import synthesize
    from tfrecords_tools.synth import body
    plan = xl.plan_row(real, "cpu")
    fv = absl_flags.FlagValues()
    synthesize.define_flags(fv)
    fv(["synthesize", *[l for l in plan.data.flag_text.splitlines() if l.startswith("--")],
        *plan.data.args, "--output_dir=x"])
    config = synthesize.config_from_flags(fv)
    test = {a for a, _ in synthesize.test_motion_sources(config)}
    pool = {a for a, _ in synthesize.extra_motion_sources(config)}
    assert test == {"s02walk", "s02run", "s02jump", "s02punch", "s02pickup", "s02washself"} \
        and len(pool) == 12
    drawn = set()
    for subject in config.subjects:
        acts = set(synthesize.subject_actions(config, subject))
        assert bool(acts & test) == (subject in body.TEST_SUBJECTS), subject
        if not body.is_extra_subject(subject):
            assert not acts & pool, subject
        drawn |= acts & pool
    assert len(drawn) >= 10
    results = {name: {"row": r, "title": name, "paper": [], "measured": [m, m, m],
                      "unseen": [2 * m, 0, 2 * m], "real": [3 * m, 0, 3 * m],
                      "real_num_frames": 10}
               for name, r, m in (("scratch", "b", 100.0), ("pretrained", "d", 80.0))}
    ratios = demo.demo_ratios(results)
    assert ratios["real_mpjpe_vs_scratch"] == pytest.approx(0.8)
    lines = demo._ratio_lines(ratios, None)
    assert "real-motion MPJPE" in lines and lines.count("**0.80**") == 6
    table = xl.format_table(xl.add_ratios([dict(results["scratch"]),
                                           dict(results["pretrained"], baseline="b")]), "t")
    assert "real-motion MPJPE" in table and "| 240.0 |" in table


def test_deterministic_rows_get_their_own_training_stages():
    """--deterministic reaches pre-training and fine-tuning (so they get new keys; a
    default run's finished stages are never reused as deterministic ones), not the data."""
    row = xl.load_row(os.path.join(ROWS, "d_ssl_no_background.flags"))
    free, fixed = xl.plan_row(row, "cpu", 3), xl.plan_row(row, "cpu", 3, deterministic=True)
    for name in ("pretrain", "finetune"):
        assert "--deterministic=true" in getattr(fixed, name).args
        assert "--deterministic=true" not in getattr(free, name).args
        assert getattr(fixed, name).key != getattr(free, name).key
    assert fixed.data.key == free.data.key


def test_stage_key_ignores_flagfile_comments_but_not_flags():
    """Editing a flagfile's comments keeps finished stages; editing a flag does not."""
    stage = xl.plan_row(xl.suite_rows("table1")[0], "cpu").stages()[-1]
    assert stage.flag_text is not None
    key = stage.key
    stage.flag_text = "# a new comment\n\n" + stage.flag_text.replace("\n", "  \n")
    assert stage.key == key
    flags = [l for l in stage.flag_text.splitlines() if l.strip().startswith("--")]
    stage.flag_text = stage.flag_text.replace(flags[0], flags[0] + "0", 1)
    assert stage.key != key


def test_bad_row_flagfile_is_named(tmp_path):
    bad = tmp_path / "bad.flags"
    bad.write_text("--row=z\n--fusion=product\n")
    with pytest.raises(ValueError, match="bad.flags"):
        xl.load_row(str(bad))
    # A stage flag is parsed and checked against the binary's config when the row is read.
    bad.write_text("--row=z\n--pretrain_args=--fusion=product\n")
    with pytest.raises(ValueError, match=r"bad.flags: --pretrain_args: .*--fusion=product"):
        xl.load_row(str(bad))
    bad.write_text("--row=z\n--finetune_args=--dropout=1.5\n")
    with pytest.raises(ValueError, match=r"--finetune_args: --dropout=1.5: expected"):
        xl.load_row(str(bad))


def test_row_overrides_are_typed_config_values(tmp_path, capsys):
    row = tmp_path / "r.flags"
    row.write_text("--row=r\n--pretrain_args=--train_subjects=S1,U*\n"
                   "--pretrain_args=--batch_size=4\n--finetune_args=--image_size=32\n")
    loaded = xl.load_row(str(row))
    # Deprecated spellings of a stage's flags resolve to the field.
    assert "--image_size is deprecated" in capsys.readouterr().err
    assert loaded.overrides == {"pretrain": {"train_subjects": ("S1", "U*"), "batch_size": 4},
                                "finetune": {"input_size": 32}}
    plan = xl.plan_row(loaded, "cpu")
    assert plan.pretrain.args[-2:] == ["--train_subjects=S1,U*", "--batch_size=4"]
    assert plan.finetune.args[-1] == "--input_size=32"


def test_a_failed_stage_ends_through_the_one_exit_path(capsys):
    from tfrecords_tools.runtime import cli
    with pytest.raises(xl.StageError) as e:
        with xl.resumable():
            raise xl.StageError("stage data failed with exit code 2: x")
    assert str(e.value) == ("stage data failed with exit code 2: x; re-run the same command "
                            "to resume")
    assert cli.exit_code(e.value) == cli.DATA_EXIT
    import errno
    with pytest.raises(xl.StageError, match="^the disk is full; free space and re-run"):
        with xl.resumable():
            raise OSError(errno.ENOSPC, "No space left on device")


def test_scaling_suite_is_defined_in_code():
    """One definition: 3 people counts x 5 budgets against baseline b, beside b and b0,
    in the order (and with the stage keys) of the 17 row files it replaces."""
    rows = xl.suite_rows("scaling")
    assert [r.row for r in rows] == ["b0", "b"] + [
        f"p{n}_x{x}" for n in ("005", "025", "105") for x in ("0_25", "0_5", "1", "2", "4")]
    points = [r for r in rows if r.series]
    assert len({r.series for r in points}) == 3 and all(r.baseline == "b" for r in points)
    assert rows[1] == dataclasses.replace(
        xl.load_row(os.path.join(ROWS, "b_random_init_no_background.flags")), path=rows[1].path)
    plans = {r.row: xl.plan_row(r, "cpu") for r in points}
    steps = {p.pretrain_steps for p in plans.values()}
    assert steps == {1750, 3500, 7000, 14000, 28000}  # 5 budgets spanning 16x, at every count
    assert plans["p005_x0_25"].pretrain.args[-2:] == ["--train_steps=1750",
                                                      "--steps_per_checkpoint=250"]
    keys = {r: p.pretrain.key for r, p in plans.items()}
    assert len(set(keys.values())) == len(points)  # every point its own pre-training
    demo_d = xl.plan_row(xl.load_row(os.path.join(ROWS, "d_ssl_no_background.flags")), "cpu")
    assert demo_d.pretrain.key == keys["p105_x1"]  # the demo's pre-training is one point
    tiny = xl.plan_row(next(r for r in points if r.row == "p005_x4"), "tiny")
    assert tiny.pretrain_steps == 16  # scaled from the tiny flagfile
    assert not os.path.exists(os.path.join(xl.FLAGS_DIR, "scaling"))


@pytest.mark.large
def test_scaling_suite_plans_and_resumes_at_tiny_scale(demo_run, demo_scaling_log):
    """The scaling suite: every row parses and plans (5 budgets x 3 people counts, all
    against baseline b); a few rows run at tiny scale in the demo's workdir, reusing its
    dataset and baseline, write the table (ratios, unseen test, pretext AUCs) and the plot,
    and a re-run reuses every stage. The rows ran in the background after the demo, with
    the experiments binary (``demo_scaling_log``, tests/conftest.py)."""
    workdir, _ = demo_run
    rows = xl.suite_rows("scaling")
    points = [r for r in rows if r.series]
    assert len({r.series for r in points}) == 3 and all(r.baseline == "b" for r in points)
    picked = ["p005_x0_5", "p025_x0_5"]
    # The binary ran each row's own stages (the dataset and baseline b are the demo's).
    for row in picked:
        for module in ("pretrain", "finetune", "evaluate"):
            assert any(l.startswith(f"[row {row} ") and f"-m tf_synchro.{module} " in l
                       for l in demo_scaling_log), (row, module)
    assert any(l.startswith("[row b ") and "reusing finished" in l for l in demo_scaling_log)
    lines = []
    results = experiments.run_suite("scaling", workdir, "tiny", rows=picked, log=lines.append)
    assert [r["row"] for r in results] == ["b"] + picked  # the baseline first
    assert any("[row b " in l and "reusing finished" in l for l in lines)
    for r in results[1:]:
        assert set(r["ratios"]) == {"mpjpe", "pa_mpjpe", "unseen_mpjpe", "unseen_pa_mpjpe"}
        assert r["ratios"]["mpjpe"] == pytest.approx(r["measured"][0] / results[0]["measured"][0])
        assert {"sync_auc", "flip_auc"} <= set(r["pretext"])
        assert r["x"] == 2.0  # half of the tiny flagfile's 4 steps
    assert _png(os.path.join(workdir, "scaling_tiny.png"))
    table = open(os.path.join(workdir, "scaling_tiny.md")).read()
    assert "| p025_x0_5 | 25 people, 0.5 x the demo's pre-training steps |" in table
    again = []
    experiments.run_suite("scaling", workdir, "tiny", rows=picked, log=again.append)
    assert not [l for l in again if "-m tf_synchro." in l]


@pytest.mark.large
def test_plot_suites_merges_result_files(tmp_path):
    """benchmarks/plot_suites.py draws the points of several suite result files (e.g. a
    grid run in pieces) in one plot and table, a line per series and seed; a point given
    twice, or a file that is not a result file, is refused in one line."""
    import subprocess
    import sys

    def point(series, x, mpjpe):
        return {"row": "r", "series": series, "x": x, "pretext": {"sync_auc": 0.7, "flip_auc": 0.6},
                "ratios": {"mpjpe": mpjpe, "pa_mpjpe": 0.8}}

    def write(name, seed, rows):
        path = tmp_path / name
        path.write_text(json.dumps({"suite": "scaling", "seed": seed, "rows": rows}))
        return str(path)

    a = write("a.json", 0, [{"row": "b", "series": None, "x": None},
                            point("25 people", 1750.0, 0.9), point("5 people", 1750.0, 0.95)])
    b = write("b.json", 1, [point("5 people", 1750.0, 0.85), point("5 people", 3500.0, 0.8)])
    script = os.path.join(xl.REPO, "benchmarks", "plot_suites.py")

    def run(*paths):
        return subprocess.run([sys.executable, script, "--results=" + ",".join(paths),
                               "--out=" + str(tmp_path / "out.png")],
                              capture_output=True, text=True, timeout=300, cwd=xl.REPO)

    proc = run(a, b)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _png(str(tmp_path / "out.png"))
    rows = [l for l in proc.stdout.splitlines() if l.startswith("| ") and "series" not in l]
    assert rows == ["| 5 people | 0 | 1,750 | 0.95 / 0.80 | – | 0.70 / 0.60 |",
                    "| 5 people | 1 | 1,750 | 0.85 / 0.80 | – | 0.70 / 0.60 |",
                    "| 5 people | 1 | 3,500 | 0.80 / 0.80 | – | 0.70 / 0.60 |",
                    "| 25 people | 0 | 1,750 | 0.90 / 0.80 | – | 0.70 / 0.60 |"]
    twice = write("c.json", 1, [point("5 people", 3500.0, 0.7)])
    (tmp_path / "bad.json").write_text("[]")
    for paths, message in (((b, twice), "both give 5 people at 3,500 steps, seed 1"),
                           ((a, str(tmp_path / "bad.json")), "bad.json is not a suite result")):
        proc = run(*paths)
        assert proc.returncode != 0 and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_report_lists_the_real_motion_ratios_per_clip(tmp_path):
    rows = {k: xl.load_row(os.path.join(ROWS, f)).with_overrides(
        "synthesize", demo.real_motion_overrides(True, False))
        for k, f in (("scratch", "b_random_init_no_background.flags"),
                     ("pretrained", "d_ssl_no_background.flags"))}
    plans = {k: xl.plan_row(r, "tiny") for k, r in rows.items()}
    assert demo.real_clip_lines(str(tmp_path), plans) == ""  # not evaluated yet
    for k, (dance, jump) in (("scratch", (200.0, 100.0)), ("pretrained", (180.0, 70.0))):
        path = plans[k].evaluate.path(str(tmp_path), xl.EVAL_JSON)
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            json.dump({"real_motion": {"per_action": {
                "dancea": {"mpjpe": dance, "pa_mpjpe": dance / 2},
                "jump": {"mpjpe": jump, "pa_mpjpe": jump}}}}, f)
    assert demo.real_clip_lines(str(tmp_path), plans) == (
        "dancea 0.90 / 0.90 (180 vs 200 mm); jump 0.70 / 0.70 (70 vs 100 mm)")


def test_stage_key_follows_the_files_a_flag_names(tmp_path):
    """A stage reading a folder of clips gets a new key when a clip is edited, added or
    renamed, not when its folder is only named again; stages naming no files keep theirs."""
    clips = tmp_path / "clips"
    clips.mkdir()
    (clips / "a.npz").write_bytes(b"one")
    stage = xl.Stage("data", "tfrecords_tools.synthesize", None,
                     [f"--extra_motion_dir={clips}", "--treadmill=true"], {}, "--output_dir")
    key = stage.key
    assert stage.key == key and "inputs" in stage.settings()
    (clips / ".hidden").write_bytes(b"editor state")
    assert stage.key == key
    (clips / "a.npz").write_bytes(b"two")
    assert stage.key != key
    key = stage.key
    (clips / "b.npz").write_bytes(b"two")
    assert stage.key != key
    key = stage.key
    (clips / "b.npz").rename(clips / "c.npz")
    assert stage.key != key
    plain = xl.Stage("data", "tfrecords_tools.synthesize", None, ["--treadmill=true"], {},
                     "--output_dir")
    assert "inputs" not in plain.settings()
