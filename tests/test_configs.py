"""One home for settings and run directories: configs, flags, aliases, run_dir, binaries."""
import ast
import dataclasses
import glob
import importlib
import json
import os
import subprocess
import sys

import pytest
from absl import flags

from tf_synchro import configs, run_dir
from tfrecords_tools.runtime import cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARIES = ("tf_synchro.pretrain", "tf_synchro.finetune", "tf_synchro.evaluate",
            "tf_synchro.evaluate_pretext", "tf_synchro.export", "tf_synchro.predict",
            "tf_synchro.demo", "tf_synchro.experiments", "tfrecords_tools.synthesize",
            "tfrecords_tools.h36m", "tfrecords_tools.rig", "tfrecords_tools.inspect",
            "tf_synchro.data_service")
CONFIG_BINARIES = {"tf_synchro.pretrain": configs.PretrainConfig,
                   "tf_synchro.finetune": configs.FinetuneConfig,
                   "tf_synchro.evaluate": configs.EvaluateConfig,
                   "tf_synchro.evaluate_pretext": configs.EvaluatePretextConfig,
                   "tf_synchro.export": configs.ExportConfig,
                   "tf_synchro.predict": configs.PredictConfig,
                   "tf_synchro.demo": configs.DemoConfig,
                   "tf_synchro.experiments": configs.ExperimentsConfig,
                   "tf_synchro.data_service": configs.DataServiceConfig}


def _flags(module: str) -> flags.FlagValues:
    fv = flags.FlagValues()
    importlib.import_module(module).define_flags(fv)
    return fv


# ----------------------------------------------------------------------------- configs

def test_every_setting_is_one_field_with_help_and_one_flag():
    for cls in CONFIG_BINARIES.values():
        fields = configs.flag_fields(cls)
        names = [n for n, *_ in fields]
        assert len(names) == len(set(names)), cls
        assert all(meta["help"] for _, _, _, meta in fields), cls
    # Fine-tuning takes the encoder part of the shared model config, not the pretext heads.
    ft = {n for n, *_ in configs.flag_fields(configs.FinetuneConfig,
                                             exclude=configs.FINETUNE_EXCLUDE)}
    assert {"arch", "width", "input_size"} <= ft and not {"fusion", "tasks", "head_units"} & ft
    pt = {n for n, *_ in configs.flag_fields(configs.PretrainConfig)}
    assert {"arch", "width", "input_size", "fusion", "tasks", "head_units"} <= pt
    # One name per concept: the model input side is input_size in both trainers.
    assert "image_size" not in pt | ft


def test_flags_round_trip_into_nested_configs_and_defaults_come_from_the_config():
    fv = _flags("tf_synchro.pretrain")
    fv(["pretrain", "--data_dir=d", "--model_dir=m", "--tasks=sync", "--fusion=concat",
        "--d_min=16", "--seed=3", "--brightness=0", "--learning_rate=0.01"])
    config = configs.from_flags(configs.PretrainConfig, fv)
    assert config.model.tasks == ("sync",) and config.model.fusion == "concat"
    assert config.optimizer.learning_rate == 0.01 and config.runtime.seed == 3
    default = configs.PretrainConfig()
    assert config.pairs.pairs_per_clip == default.pairs.pairs_per_clip == 12
    # The pair pipeline derives tasks, input size, subjects and seed from the run: one value.
    pairs = config.pair_config()
    assert pairs.tasks == ("sync",) and pairs.seed == 3 and pairs.d_min == 16
    assert pairs.subjects == config.train_subjects
    assert pairs.augment.output_size == config.model.input_size
    assert pairs.augment.brightness == 0 and pairs.device_augment
    assert config.loss_weights() == {"sync": 1.0}
    # make() takes the same flat names and refuses unknown ones.
    assert configs.make(configs.PretrainConfig, data_dir="d", model_dir="m", tasks=("sync",),
                        fusion="concat", d_min=16, seed=3, brightness=0,
                        learning_rate=0.01) == config
    with pytest.raises(TypeError, match="no settings"):
        configs.make(configs.PretrainConfig, image_size=64)
    # A derived field of a nested config is not a setting of the run.
    assert configs.make(configs.PretrainConfig, seed=5).pairs.seed is None


def test_the_flag_engine_is_the_bottom_layer_and_takes_aliases_by_registration(capsys):
    from tfrecords_tools import inspect
    from tfrecords_tools.runtime import flags as flag_engine
    tree = ast.parse(open(flag_engine.__file__).read())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)} | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not [m for m in imported if m.split(".")[0] in ("tf_synchro", "tfrecords_tools")]
    # configs registered its aliases; any binary's owner can register its own.
    assert configs.warn_deprecated is flag_engine.warn_deprecated
    flag_engine.register_aliases(deprecated={"tfrecords_tools.inspect": {"sheet": "contact_sheet"}})
    try:
        fv = flags.FlagValues()
        inspect.define_flags(fv)
        fv(["inspect", "--sheet=x.png"])
        assert flag_engine.warn_deprecated("tfrecords_tools.inspect", fv) == [
            ("sheet", "contact_sheet")]
        assert "--sheet is deprecated" in capsys.readouterr().err
        assert flag_engine.from_flags(inspect.InspectConfig, fv).contact_sheet == "x.png"
    finally:
        del flag_engine._DEPRECATED["tfrecords_tools.inspect"]


def test_the_suite_drivers_take_their_flags_from_configs():
    from tf_synchro.suite import experiment_lib
    assert configs.SUITE_SCALES == tuple(sorted(experiment_lib.SCALES))
    fv = _flags("tf_synchro.experiments")
    fv(["experiments", "--workdir=w", "--suite=scaling", "--rows=b,p005_x1", "--scale=tiny"])
    config = configs.from_flags(configs.ExperimentsConfig, fv)
    assert config == configs.ExperimentsConfig(workdir="w", suite="scaling",
                                               rows=("b", "p005_x1"), scale="tiny")
    fv = _flags("tf_synchro.demo")
    fv(["demo", "--workdir=w", "--real_motion_test"])
    config = configs.from_flags(configs.DemoConfig, fv)
    assert config.real_motion_test and config.pretrained_row.endswith("d_ssl_no_background.flags")


def test_choices_and_list_items_are_checked():
    fv = _flags("tf_synchro.pretrain")
    with pytest.raises(flags.IllegalFlagValueError):
        fv(["pretrain", "--data_dir=d", "--model_dir=m", "--fusion=max"])
    fv = _flags("tf_synchro.pretrain")
    fv(["pretrain", "--data_dir=d", "--model_dir=m", "--tasks=sync,jump"])
    with pytest.raises(ValueError, match="--tasks=sync,jump: expected items from sync,flip"):
        configs.from_flags(configs.PretrainConfig, fv)
    with pytest.raises(ValueError, match="--pose_head_units=a: expected a list of int"):
        configs.make(configs.FinetuneConfig, pose_head_units=("a",))


def test_deprecated_spellings_still_work_and_warn(capsys):
    fv = _flags("tf_synchro.finetune")
    fv(["finetune", "--data_dir=d", "--model_dir=m", "--image_size=64", "--head_units=32,16"])
    used = configs.warn_deprecated("tf_synchro.finetune", fv)
    assert used == [("image_size", "input_size"), ("head_units", "pose_head_units")]
    err = capsys.readouterr().err
    assert "--image_size is deprecated" in err and "use --input_size" in err
    config = configs.from_flags(configs.FinetuneConfig, fv, exclude=configs.FINETUNE_EXCLUDE)
    assert config.model.input_size == 64 and config.pose_head_units == (32, 16)
    assert config.frame_config().augment.output_size == 64
    fv = _flags("tf_synchro.finetune")
    fv(["finetune", "--data_dir=d", "--model_dir=m", "--input_size=64"])
    assert configs.warn_deprecated("tf_synchro.finetune", fv) == []


def test_evaluate_takes_model_as_a_lasting_second_spelling(capsys):
    fv = _flags("tf_synchro.evaluate")
    fv(["evaluate", "--model=exports/pose/1.int8.tflite", "--data_dir=d"])
    assert configs.warn_deprecated("tf_synchro.evaluate", fv) == []
    assert capsys.readouterr().err == ""
    config = configs.from_flags(configs.EvaluateConfig, fv)
    assert config.model_dir == "exports/pose/1.int8.tflite"


def test_a_deprecated_spelling_in_a_real_invocation_warns_then_behaves_as_the_new_flag(tmp_path):
    code, _, err = cli.invoke("tf_synchro.finetune", [f"--data_dir={tmp_path}",
                                                      f"--model_dir={tmp_path}/m",
                                                      "--image_size=0"])
    assert code == cli.USAGE_EXIT
    assert err.splitlines() == [
        "warning: --image_size is deprecated and will be removed in the next release; use "
        "--input_size",
        "finetune: error: --input_size=0: expected an integer >= 32"]
    assert os.listdir(tmp_path) == []


def test_the_repository_flagfiles_parse_with_the_new_names():
    modules = {"pretrain": "tf_synchro.pretrain", "finetune": "tf_synchro.finetune",
               "evaluate": "tf_synchro.evaluate", "synthesize": "tfrecords_tools.synthesize"}
    required = {"pretrain": ["--data_dir=d", "--model_dir=m"],
                "finetune": ["--data_dir=d", "--model_dir=m"],
                "evaluate": ["--data_dir=d", "--model_dir=m"], "synthesize": ["--output_dir=o"]}
    for path in glob.glob(os.path.join(REPO, "flags", "*.flags")):
        name = os.path.basename(path).split("_")[0]
        module = modules[name]
        fv = _flags(module)
        fv([name, f"--flagfile={path}", *required[name]])
        if module in CONFIG_BINARIES:
            configs.from_flags(CONFIG_BINARIES[module], fv,
                               exclude=configs.FINETUNE_EXCLUDE if name == "finetune" else ())
            assert configs.warn_deprecated(module, fv) == [], path


# ----------------------------------------------------------------------------- run_dir

def _pretrain_record(**kw) -> run_dir.PretrainRecord:
    return run_dir.PretrainRecord.from_config(configs.make(
        configs.PretrainConfig, data_dir="/d", model_dir="/m", width=0.25, **kw))


def _pose_record(init_from=configs.SCRATCH, **kw) -> run_dir.PoseRecord:
    config = configs.make(configs.FinetuneConfig, data_dir="/d", model_dir="/m",
                          init_from=init_from, label_subjects=("S1",), **kw)
    return run_dir.PoseRecord.from_config(config, [[0.0] * 3], [[1.0] * 3])


def test_run_dir_refuses_other_settings_naming_each_difference(tmp_path):
    model_dir = str(tmp_path / "run")
    record = _pretrain_record(batch_size=4)
    assert run_dir.prepare(model_dir, record) == record == run_dir.read_record(model_dir)
    raw = json.load(open(run_dir.config_path(model_dir)))
    assert raw["model"] == {"arch": "resnet18", "width": 0.25, "input_size": 128,
                            "fusion": "multiply", "tasks": ["sync", "flip"], "head_units": 256}
    assert raw["training"]["batch_size"] == 4 and raw["pairs"]["d_min"] == 4
    # Recorded settings may change on resume; model settings may not.
    run_dir.prepare(model_dir, _pretrain_record(batch_size=8))
    assert run_dir.read_record(model_dir).training["batch_size"] == 8
    with pytest.raises(run_dir.ModelDirError,
                       match=r"different settings .*'width': \(0.25, 0.5\)"):
        run_dir.prepare(model_dir, dataclasses.replace(record, width=0.5))
    with open(run_dir.config_path(model_dir), "w") as f:
        f.write("{torn")
    with pytest.raises(run_dir.ModelDirError, match="not valid JSON"):
        run_dir.read_record(model_dir)
    os.makedirs(tmp_path / "ckpt" / run_dir.BACKUP_DIR)
    open(tmp_path / "ckpt" / run_dir.BACKUP_DIR / run_dir.WEIGHTS_FILE, "w").close()
    with pytest.raises(run_dir.ModelDirError, match="holds a checkpoint but no config.json"):
        run_dir.prepare(str(tmp_path / "ckpt"), record)


def test_run_dir_reads_what_a_run_trained_on(tmp_path):
    pre, ft = str(tmp_path / "pre"), str(tmp_path / "ft")
    run_dir.prepare(pre, _pretrain_record(train_subjects=("S1", "U01")))
    stored = run_dir.prepare(ft, _pose_record(init_from=pre))
    assert run_dir.init_dir(ft) == pre
    assert run_dir.trained_subjects(ft) == ["S1", "U01"]
    assert run_dir.stored_statistics(ft) == ([[0.0] * 3], [[1.0] * 3])
    with pytest.raises(ValueError, match="includes U01"):
        run_dir.check_held_out(ft, ["S9", "U01"])
    with pytest.raises(run_dir.UnfinishedModelDirError, match="no finished fine-tuning run"):
        run_dir.load_pose_run(ft)
    with pytest.raises(run_dir.UnfinishedModelDirError, match="not from a fine-tuning run"):
        run_dir.load_pose_run(pre)
    run_dir.mark_finished(ft, stored, 10)
    assert json.load(open(run_dir.config_path(ft)))["finished"] == {
        "step": 10, "pose_model": run_dir.POSE_MODEL_FILE}
    assert run_dir.read_record(ft) == dataclasses.replace(stored, finished=run_dir.Finished(10))
    with pytest.raises(FileNotFoundError, match="sync_flip.keras not found"):
        run_dir.load_pretrain_run(pre)


def test_records_read_runs_written_by_earlier_versions(tmp_path):
    """config.json as the first pre-training version wrote it (no augment_on, gap_sampling,
    pair_grouping or loss weights) and as fine-tuning has written it since; a record of
    the current layout survives a round trip through the file."""
    pre, ft = tmp_path / "pre", tmp_path / "ft"
    pre.mkdir()
    ft.mkdir()
    (pre / "config.json").write_text(json.dumps({
        "model": {"arch": "resnet18", "width": 0.5, "input_size": 64, "fusion": "multiply",
                  "tasks": ["sync", "flip"], "head_units": 256},
        "data_dir": "/data/synth", "train_subjects": ["S1", "S5"], "eval_subjects": ["S9"],
        "pairs": {"d_min": 8, "d_max": 64, "views": "multi", "pairs_per_clip": 12,
                  "min_scale": 0.7, "max_scale": 1.0},
        "training": {"batch_size": 16, "train_steps": 100, "learning_rate": 1e-3,
                     "final_learning_rate": 1e-6, "weight_decay": 1e-4,
                     "strategy": "default", "mixed_precision": "float32"}}))
    (ft / "config.json").write_text(json.dumps({
        "model": {"task": "pose3d", "arch": "resnet18", "width": 0.5, "input_size": 64,
                  "head_units": [], "dropout": 0.0, "freeze_blocks": 3, "init_from": str(pre),
                  "label_subjects": ["S1"], "label_fraction": 1.0,
                  "target_mean": [[0.0, 1.0, 2.0]], "target_std": [[1.0, 1.0, 1.0]],
                  "units": "mm, root-relative, camera frame",
                  "preprocess": {"crop_scale": 0.9, "dct_method": "INTEGER_FAST"}},
        "data_dir": "/data/synth", "train": {"batch_size": 8},
        "finished": {"step": 60, "pose_model": "pose_model.keras"}}))
    old = run_dir.read_record(str(pre))
    assert isinstance(old, run_dir.PretrainRecord) and old.train_subjects == ("S1", "S5")
    pair_config = old.pair_config()
    assert (pair_config.d_min, pair_config.d_max, pair_config.gap_sampling) == (8, 64, "clip")
    assert pair_config.tasks == ("sync", "flip") and pair_config.augment.output_size == 64
    assert pair_config.augment.min_scale == 0.7
    assert (old.pairs.augment_on, old.pairs.pair_grouping) == ("host", "pairs")
    pose_record = run_dir.read_record(str(ft))
    assert isinstance(pose_record, run_dir.PoseRecord)
    assert pose_record.preprocess == run_dir.Preprocess(0.9, "INTEGER_FAST")
    assert (pose_record.input_size, pose_record.finished.step) == (64, 60)
    assert run_dir.trained_subjects(str(ft)) == ["S1", "S5"]
    # The current layout: what is written reads back equal, and old files keep their keys.
    for record in (old, pose_record, _pretrain_record(), _pose_record()):
        raw = record.to_json()
        assert type(record).from_json(json.loads(json.dumps(raw))) == record
    assert pose_record.to_json() == json.loads((ft / "config.json").read_text())
    with pytest.raises(run_dir.ModelDirError, match="lacks preprocess"):
        run_dir.PoseRecord.from_json({"model": {"task": "pose3d", "arch": "resnet18",
                                                "width": 1.0, "input_size": 64,
                                                "target_mean": [], "target_std": []}})


def test_training_state_is_typed_and_a_torn_one_is_named(tmp_path):
    backup = str(tmp_path)
    assert run_dir.read_state(backup) is None
    run_dir.write_state(backup, run_dir.TrainState(epoch=2, step=6))
    assert json.load(open(tmp_path / run_dir.STATE_FILE)) == {"epoch": 2, "step": 6}
    assert run_dir.read_state(backup) is None  # No weights beside it: not a checkpoint.
    open(tmp_path / run_dir.WEIGHTS_FILE, "w").close()
    assert run_dir.read_state(backup) == run_dir.TrainState(epoch=2, step=6)
    (tmp_path / run_dir.STATE_FILE).write_text('{"epoch": 2}')
    with pytest.raises(run_dir.ModelDirError, match="state.json is not a training state"):
        run_dir.read_state(backup)


def test_pair_settings_read_back_from_a_pretraining_config():
    config = configs.make(configs.PretrainConfig, data_dir="/d", model_dir="/m", d_min=16,
                          gap_sampling="uniform", tasks=("sync",), input_size=64,
                          min_scale=0.7)
    stored = json.loads(json.dumps(run_dir.PretrainRecord.from_config(config).to_json()))
    back = run_dir.PretrainRecord.from_json(stored).pair_config()
    train = config.pair_config()
    for name in ("d_min", "d_max", "tasks", "views", "gap_sampling"):
        assert getattr(back, name) == getattr(train, name), name
    assert back.augment.output_size == 64 and back.augment.min_scale == 0.7


# ----------------------------------------------------------------------------- binaries

def test_no_module_outside_run_dir_names_the_run_directory_files():
    """Every run-directory file name is a run_dir constant; no module imports a binary."""
    names = {run_dir.CONFIG_FILE, run_dir.ENCODER_FILE, run_dir.SYNC_FLIP_FILE,
             run_dir.POSE_MODEL_FILE, run_dir.PRETEXT_EVAL_FILE, run_dir.STATE_FILE,
             run_dir.WEIGHTS_FILE, run_dir.BACKUP_DIR}
    binaries = {b.rsplit(".", 1)[-1] for b in BINARIES if b.startswith("tf_synchro.")}
    for path in glob.glob(os.path.join(REPO, "tf_synchro", "**", "*.py"), recursive=True):
        text = open(path).read()
        name = os.path.relpath(path, REPO)
        tree = ast.parse(text)
        if not name.endswith("run_dir.py"):
            literals = {node.value for node in ast.walk(tree) if isinstance(node, ast.Constant)}
            assert not literals & names, (name, literals & names)
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module == "tf_synchro" for alias in node.names}
        if not name.endswith(("demo.py", "experiments.py")):  # The suite drivers.
            assert not imported & (binaries - {"experiments"}), (name, imported & binaries)
    for path in glob.glob(os.path.join(REPO, "tf_synchro", "models", "*.py")):
        text = open(path).read()
        assert "open(" not in text and "import json" not in text, path  # No file I/O.


@pytest.mark.large
def test_every_binary_has_one_shape_and_registers_no_flag_on_import():
    code = ("import importlib, sys\nfrom absl import flags\n"
            "before = set(flags.FLAGS)\n"
            f"for m in {list(BINARIES)!r}:\n"
            "    mod = importlib.import_module(m)\n"
            "    assert callable(mod.define_flags) and callable(mod.main), m\n"
            "new = [n for n in set(flags.FLAGS) - before if (flags.FLAGS."
            "find_module_defining_flag(n) or '').split('.')[0] in ('tf_synchro', "
            "'tfrecords_tools', '__main__')]\n"
            "print(sorted(new))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=300,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


REQUIRED = {"tf_synchro.pretrain": ["--data_dir={t}", "--model_dir={t}/m"],
            "tf_synchro.finetune": ["--data_dir={t}", "--model_dir={t}/m"],
            "tf_synchro.evaluate": ["--data_dir={t}", "--model_dir={t}/m"],
            "tf_synchro.evaluate_pretext": ["--model_dir={t}/m"],
            "tf_synchro.export": ["--model_dir={t}/m", "--export_dir={t}/e"],
            "tf_synchro.predict": ["--model={t}/m", "--output={t}/p.json"],
            "tf_synchro.demo": ["--workdir={t}/w"],
            "tf_synchro.experiments": ["--workdir={t}/w"],
            "tfrecords_tools.synthesize": ["--output_dir={t}/o"],
            "tfrecords_tools.h36m": ["--h36m_root={t}", "--output_dir={t}/o"],
            "tfrecords_tools.rig": ["--input_dir={t}", "--output_dir={t}/o"]}


@pytest.mark.parametrize("module", sorted(REQUIRED))
def test_every_binary_refuses_stray_arguments_with_a_usage_error(module, tmp_path):
    """Same exit path everywhere: a stray argument is one line on stderr and exit 2, before
    anything is read or written."""
    argv = [a.format(t=tmp_path) for a in REQUIRED[module]] + ["stray"]
    code, _, err = cli.invoke(module, argv)
    assert code == cli.USAGE_EXIT, err
    assert err.count("error:") == 1 and "'stray'" in err, err
    assert sorted(os.listdir(tmp_path)) == [], os.listdir(tmp_path)


def test_config_dataclasses_live_in_configs():
    """No other module of the package defines a settings dataclass of a binary or pipeline."""
    for path in glob.glob(os.path.join(REPO, "tf_synchro", "**", "*.py"), recursive=True):
        if path.endswith("configs.py"):
            continue
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                pytest.fail(f"{path}: class {node.name} belongs in tf_synchro/configs.py")
    assert all(dataclasses.is_dataclass(c) for c in CONFIG_BINARIES.values())


@pytest.mark.large
def test_help_lists_the_binary_flags_made_from_its_config():
    out = subprocess.run([sys.executable, "-m", "tf_synchro.pretrain", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert "tf_synchro/pretrain.py:" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    for name, _, _, meta in configs.flag_fields(configs.PretrainConfig):
        assert f"--{name}" in out.stdout or f"--[no]{name}" in out.stdout, name
    assert "Unsynchronized pairs: |dt| > d_min frames." in out.stdout


# ----------------------------------------------------------------------------- tfrecords_tools

# The data binaries keep their settings in their own dataclasses (issue 28): each field is
# documented in the class docstring and is a flag of the binary with the config's default,
# or is named here as not a flag, with why. Flags that are not settings of the dataset
# (where to write, parallelism) are named too.
TOOLS_CONFIGS = {
    "tfrecords_tools.synthesize": dict(
        cls="SynthConfig", consumer="generate",
        home="tfrecords_tools.synth.config",  # Below the binary: the suites' rows use it.
        not_flags={"cameras": "a rig object; the binary renders the Human3.6M rig",
                   "crop_margin": "fixed: the crops the paper's pipeline makes"},
        not_fields={"output_dir", "num_workers", "runner", "beam_options",
                    "extra_subjects"},  # Adds U01...UN to subjects.
        argv=["--output_dir={t}/o", "--subjects=S1,S9", "--extra_subjects=2",
              "--actions=Walking", "--takes=3", "--num_frames=77", "--clip_length=64",
              "--image_size=64", "--background", "--min_motion_mm=2.5", "--seed=7",
              "--motion_file={t}/m.npz", "--crop_jitter=0.01", "--jpeg_quality=80",
              "--nolabels", "--look_variation=take", "--extra_actions=Dancing,Mixed",
              "--extra_actions_per_subject=1", "--unseen_actions=Kicking",
              "--motion_dir={t}/md", "--motion_mapping={t}/map.json", "--motion_window=80",
              "--treadmill", "--motion_fps=120", "--motion_units=cm", "--motion_up_axis=y",
              "--motion_max_gap_ms=50", "--nomotion_retarget", "--extra_motion_dir={t}/xm",
              "--extra_motion_only", "--labelled_extra_motions=3", "--labelled_motion_only",
              "--extra_motion_mirror",
              "--test_motion_dir={t}/tm", "--bystanders=1",
              "--moving_objects=2", "--lighting=drift", "--sensor_noise=3.5",
              "--textured_room"],
        expect={"subjects": ("S1", "S9", "U01", "U02"), "actions": ("Walking",), "takes": 3,
                "num_frames": 77, "clip_length": 64, "image_size": 64, "background": True,
                "min_motion_mm": 2.5, "seed": 7, "motion_file": "{t}/m.npz",
                "crop_jitter": 0.01, "jpeg_quality": 80, "labels": False,
                "look_variation": "take", "extra_actions": ("Dancing", "Mixed"),
                "extra_actions_per_subject": 1, "unseen_actions": ("Kicking",),
                "motion_dir": "{t}/md", "motion_mapping": "{t}/map.json", "motion_window": 80,
                "treadmill": True, "motion_fps": 120.0, "motion_units": "cm",
                "motion_up_axis": "y", "motion_max_gap_ms": 50.0, "motion_retarget": False,
                "extra_motion_dir": "{t}/xm", "extra_motion_only": True,
                "labelled_extra_motions": 3, "labelled_motion_only": True,
                "extra_motion_mirror": True,
                "test_motion_dir": "{t}/tm", "bystanders": 1, "moving_objects": 2,
                "lighting": "drift", "sensor_noise": 3.5, "textured_room": True}),
    "tfrecords_tools.h36m": dict(
        cls="H36MConfig", consumer="convert",
        not_flags={"background_samples": "an implementation constant of the median background",
                   "min_views": "pairs need two views; the converter's fixed floor"},
        not_fields={"output_dir", "num_workers", "runner", "beam_options"},
        argv=["--h36m_root={t}", "--output_dir={t}/o", "--subjects=S1,S9",
              "--actions=Walking,Posing", "--cameras=54138969,60457274", "--frame_step=2",
              "--image_size=64", "--clip_length=64", "--margin=0.3", "--background=remove",
              "--motion_threshold_mm=2.5", "--include_damaged", "--jpeg_quality=80",
              "--mask_threshold=12.5"],
        expect={"h36m_root": "{t}", "subjects": ("S1", "S9"), "actions": ("Walking", "Posing"),
                "cameras": ("54138969", "60457274"), "frame_step": 2, "image_size": 64,
                "clip_length": 64, "margin": 0.3, "background": "remove",
                "motion_threshold_mm": 2.5, "include_damaged": True, "jpeg_quality": 80,
                "mask_threshold": 12.5}),
    "tfrecords_tools.rig": dict(
        cls="RigConfig", consumer="convert",
        not_flags={"background_samples": "an implementation constant of the median background",
                   "analysis_size": "an implementation constant of the mask analysis",
                   "box_smoothing": "an implementation constant of the crop boxes",
                   "min_views": "pairs need two views; the converter's fixed floor"},
        not_fields={"output_dir", "num_workers", "runner", "beam_options"},
        argv=["--input_dir={t}", "--output_dir={t}/o", "--subject=P7", "--sequences=a,b",
              "--fps=25", "--frame_step=2", "--image_size=64", "--clip_length=64",
              "--crop=fixed", "--margin=0.3", "--background=remove", "--motion_threshold=0.5",
              "--mask_threshold=12.5", "--jpeg_quality=80", "--calibration={t}/c.toml",
              "--calibration_units=m", "--resample_fps=30", "--box_background=median",
              "--background_video={t}/plates", "--hold_frames=4", "--multiview_tolerance=0.5"],
        expect={"input_dir": "{t}", "subject": "P7", "sequences": ("a", "b"), "fps": 25.0,
                "frame_step": 2, "image_size": 64, "clip_length": 64, "crop": "fixed",
                "margin": 0.3, "background": "remove", "motion_threshold": 0.5,
                "mask_threshold": 12.5, "jpeg_quality": 80, "calibration": "{t}/c.toml",
                "calibration_units": "m", "resample_fps": 30.0, "box_background": "median",
                "background_video": "{t}/plates", "hold_frames": 4,
                "multiview_tolerance": 0.5},
        folders=("plates",)),
    "tfrecords_tools.inspect": dict(
        cls="InspectConfig", consumer="inspect_dataset", by_keyword=True, not_flags={},
        not_fields=set(),
        argv=["{t}", "--contact_sheet={t}/sheet.png", "--num_sequences=2", "--num_timesteps=5"],
        expect={"contact_sheet": "{t}/sheet.png", "num_sequences": 2, "num_timesteps": 5}),
}
# The binary's invocation config around each dataset config (where to write, workers):
# its fields beside the nested dataset config are the flags named in not_fields.
TOOLS_RUNS = {"tfrecords_tools.synthesize": "SynthesizeRun", "tfrecords_tools.h36m": "H36MRun",
              "tfrecords_tools.rig": "RigRun"}
# Settings dataclasses of libraries, built by a binary from its own flags (not binaries'
# configs themselves), with the binary that builds them.
LIBRARY_CONFIGS = {("tfrecords_tools.person_boxes", "BoxConfig"): "tfrecords_tools.rig"}


def _tool_flags(module_name: str) -> dict:
    """{name: absl Flag} of a data binary (defined on the global FLAGS, then forgotten)."""
    module = importlib.import_module(module_name)
    cli.reset_flags()
    try:
        module.define_flags()
        return {name: flags.FLAGS[name] for name in flags.FLAGS
                if (flags.FLAGS.find_module_defining_flag(name) or "").startswith(
                    module_name.split(".")[0])}
    finally:
        cli.reset_flags()


def _flag_default(value):
    """A flag default as the config stores it: lists are tuples, an empty list "all" (None)."""
    return tuple(value) if isinstance(value, list) else value


def test_every_tfrecords_tools_config_dataclass_is_covered():
    """Every settings dataclass of tfrecords_tools (a class named ...Config) is checked below."""
    found = set()
    for path in glob.glob(os.path.join(REPO, "tfrecords_tools", "**", "*.py"), recursive=True):
        module = os.path.relpath(path, REPO)[:-len(".py")].replace(os.sep, ".")
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ClassDef) and node.name.endswith("Config"):
                found.add((module, node.name))
    assert found == {(spec.get("home", m), spec["cls"]) for m, spec in TOOLS_CONFIGS.items()} | set(
        LIBRARY_CONFIGS)


@pytest.mark.parametrize("module_name", sorted(TOOLS_RUNS))
def test_every_tfrecords_tools_binary_takes_its_flags_from_one_run_config(module_name):
    """The binary's flags are exactly those of its run config (the engine's flag_fields):
    the dataset config nested in it, plus the flags that are not dataset settings."""
    from tfrecords_tools.runtime import flags as flag_engine
    module = importlib.import_module(module_name)
    run = getattr(module, TOOLS_RUNS[module_name])
    spec = TOOLS_CONFIGS[module_name]
    names = {n for n, *_ in flag_engine.flag_fields(run)}
    assert names == set(_tool_flags(module_name))
    nested = [f for f in dataclasses.fields(run) if dataclasses.is_dataclass(f.type)
              or f.type == spec["cls"]]
    assert [f.type if isinstance(f.type, str) else f.type.__name__ for f in nested] == [
        spec["cls"]]
    assert {f.name for f in dataclasses.fields(run)} - {nested[0].name} == spec["not_fields"]


@pytest.mark.parametrize("module_name", sorted(TOOLS_CONFIGS))
def test_every_tfrecords_tools_setting_is_documented_and_one_flag_with_its_default(module_name):
    spec = TOOLS_CONFIGS[module_name]
    cls = getattr(importlib.import_module(module_name), spec["cls"])
    assert dataclasses.is_dataclass(cls)
    doc = cls.__doc__ or ""
    fv = _tool_flags(module_name)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(spec["not_flags"]) <= set(fields) and all(spec["not_flags"].values())
    for name, field in fields.items():
        # Documented: an "Attributes:" entry of the class docstring.
        assert f"\n      {name}: " in doc, f"{spec['cls']}.{name} is not in its docstring"
        if name in spec["not_flags"]:
            assert name not in fv, f"{name} is a flag now: remove it from not_flags"
            continue
        assert name in fv, f"{spec['cls']}.{name} has no --{name} flag"
        flag = fv[name]
        assert flag.help and flag.help.strip(), name
        if field.default is dataclasses.MISSING:  # A required setting: a required flag.
            assert flag.default is None, name
            continue
        default = _flag_default(flag.default)
        if default == () and field.default is None:  # An empty list means "all".
            continue
        assert default == field.default, (f"--{name} defaults to {flag.default!r}, "
                                          f"{spec['cls']}.{name} to {field.default!r}")
    # Every other flag of the binary is named as not a dataset setting.
    assert set(fv) - set(fields) == spec["not_fields"], module_name


@pytest.mark.parametrize("module_name", sorted(TOOLS_CONFIGS))
def test_every_tfrecords_tools_flag_reaches_its_config_field(module_name, tmp_path,
                                                             monkeypatch):
    """The binary puts each flag's value into its config: every flag set away from its
    default arrives in the config the binary hands on (the writer is replaced by a stub)."""
    spec = TOOLS_CONFIGS[module_name]
    module = importlib.import_module(module_name)
    cls = getattr(module, spec["cls"])
    flagged = {f.name for f in dataclasses.fields(cls)} - set(spec["not_flags"])
    assert set(spec["expect"]) == flagged, "list every flag of the config in argv and expect"
    seen = []

    def stub(*args, **kwargs):
        if spec.get("by_keyword"):  # The consumer takes the settings one by one.
            seen.append(cls(**{k: v for k, v in kwargs.items() if k in flagged}))
            return inspect_report
        seen.append(next(a for a in (*args, *kwargs.values()) if isinstance(a, cls)))
        return {"totals": {}, "skipped": [], "shards": []}

    inspect_report = type("Report", (), {"stray": [], "num_shards": 0, "num_records": 0,
                                         "num_images": 0})

    monkeypatch.setattr(module, spec["consumer"], stub)
    for folder in spec.get("folders", ()):  # Flags whose folder is checked on parsing.
        os.makedirs(tmp_path / folder)
    code, _, err = cli.invoke(module_name, [a.format(t=tmp_path) for a in spec["argv"]])
    assert code == 0, err
    assert len(seen) == 1
    config = seen[0]
    for name, value in spec["expect"].items():
        value = value.format(t=tmp_path) if isinstance(value, str) else value
        assert getattr(config, name) == value, (name, getattr(config, name), value)
        default = cls.__dataclass_fields__[name].default
        assert value != default, f"{name}: pick a value other than the default"
    for name in spec["not_flags"]:
        assert getattr(config, name) == cls.__dataclass_fields__[name].default, name
