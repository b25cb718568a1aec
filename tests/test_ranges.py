"""Declared ranges (issue 30 item 1): every setting is checked before any work or write.

Each numeric field of a config in :mod:`tf_synchro.configs`, and of the dataset binaries'
configs (synthesize, rig, h36m, inspect), declares its range with :func:`configs.setting`
(or says ``unbounded=True``); a field with choices declares them.
These tests enumerate every such field, build a value outside the declaration, and check
that :func:`configs.check_ranges` names the flag, and that each binary refuses it (exit 2,
one line naming ``--field``) before its output directory exists. A path setting declares
``path=True``: an empty or blank value is refused the same way.
"""
import dataclasses
import math
import re

import pytest

from tf_synchro import configs
from tfrecords_tools.runtime import cli
from tfrecords_tools.runtime import flags as flag_engine

from tfrecords_tools import calibration, h36m, inspect, rig, synthesize

# The configs of the dataset binaries: the dataset settings and the run around them.
TOOL_CONFIGS = (synthesize.SynthConfig, synthesize.SynthesizeRun, rig.RigConfig, rig.RigRun,
                h36m.H36MConfig, h36m.H36MRun, inspect.InspectConfig,
                calibration.CalibrationRun)
CONFIGS = sorted((c for c in vars(configs).values()
                  if isinstance(c, type) and dataclasses.is_dataclass(c)
                  and c.__module__ == configs.__name__), key=lambda c: c.__name__) + sorted(
    TOOL_CONFIGS, key=lambda c: c.__name__)


def _declared(meta) -> bool:
    return any(meta.get(k) is not None for k in configs.BOUND_KEYS)


def _bad_values(cls, field) -> list:
    """Values outside ``field``'s declaration: below/above each bound, NaN, a non-choice."""
    meta, out = field.metadata, []
    tp = configs.numeric_type(cls, field)
    if tp is not None:
        if meta.get("minimum") is not None:
            out.append(meta["minimum"] - (1 if tp is int else 0.5))
        if meta.get("above") is not None:
            out.append(tp(meta["above"]))
        if meta.get("maximum") is not None:
            out.append(meta["maximum"] + (1 if tp is int else 0.5))
        if meta.get("below") is not None:
            out.append(tp(meta["below"]))
        if tp is float:
            out += [math.nan, math.inf]
    if meta.get("choices"):
        out.append("not-a-choice")
    if tp is not None and flag_engine._base(flag_engine._hints(cls)[field.name]) is tuple:
        out = [(v,) for v in out]
    return out


CASES = [(cls, f, v) for cls in CONFIGS for f in dataclasses.fields(cls)
         for v in _bad_values(cls, f)]


def test_every_numeric_field_declares_its_range():
    undeclared = [f"{cls.__name__}.{f.name}" for cls in CONFIGS for f in dataclasses.fields(cls)
                  if configs.numeric_type(cls, f) is not None
                  and not (_declared(f.metadata) or f.metadata.get("unbounded"))]
    assert not undeclared, f"declare minimum/maximum/above/below or unbounded=True: {undeclared}"
    assert len(CASES) > 60  # The enumeration found the fields.
    assert {cls for cls, _, _ in CASES} >= set(TOOL_CONFIGS)  # The dataset binaries' too.


@pytest.mark.parametrize("cls", CONFIGS, ids=lambda c: c.__name__)
def test_defaults_lie_in_their_declared_ranges(cls):
    configs.check_ranges(flag_engine._default_instance(cls))


@pytest.mark.parametrize("cls,field,value", CASES,
                         ids=[f"{c.__name__}.{f.name}={v}" for c, f, v in CASES])
def test_a_value_outside_the_declaration_is_refused_naming_the_flag(cls, field, value):
    name = f"--{field.name}" if field.metadata.get("flag", True) else field.name
    with pytest.raises(ValueError) as e:
        # The converters' configs check their ranges when built (a library call too).
        config = dataclasses.replace(flag_engine._default_instance(cls), **{field.name: value})
        configs.check_ranges(config)
    assert str(e.value).startswith(f"{name}="), e.value
    assert "expected" in str(e.value)


def test_relations_are_checked_after_the_ranges():
    opt = configs.OptimizerConfig
    with pytest.raises(ValueError, match=r"^--final_learning_rate=0.1: .*--learning_rate=0.01"):
        opt(learning_rate=0.01, final_learning_rate=0.1).check()
    with pytest.raises(ValueError, match=r"^--warmup_steps=9"):
        opt(train_steps=4, steps_per_checkpoint=2, warmup_steps=9).check()
    with pytest.raises(ValueError, match="nothing would train"):
        configs.make(configs.PretrainConfig, data_dir="d", model_dir="m", tasks=("sync",),
                     sync_loss_weight=0.0).check()
    with pytest.raises(ValueError, match=r"^--d_min=8, --d_max=8"):
        configs.PairConfig(d_min=8, d_max=8).validate()
    with pytest.raises(ValueError, match=r"^--pose_head_units=8,0: expected items each"):
        configs.make(configs.FinetuneConfig, data_dir="d", model_dir="m",
                     pose_head_units=(8, 0)).check()


PATHS = [(cls, f) for cls in CONFIGS for f in dataclasses.fields(cls) if f.metadata.get("path")]
# String settings named like a path that are not declared ``path=True``, and why.
NOT_PATHS = {"contact_sheet": "'' means no contact sheet",
             "motion_mapping": "a JSON file or text", "intrinsics": "numbers or a file"}
_PATH_NAME = re.compile(r"(^|_)(dir|root|file|json|png|output|model|video|images|boxes|overlay|"
                        r"calibration|workdir|sheet|mapping|units|intrinsics)$|^init_from$")


def test_every_path_setting_is_declared_and_refuses_a_blank_value_or_one_below_a_file(
        tmp_path):
    named = {f.name for cls in CONFIGS for f in dataclasses.fields(cls)
             if _PATH_NAME.search(f.name) and not f.metadata.get("choices")
             and flag_engine._base(flag_engine._hints(cls)[f.name]) is str}
    declared = {f.name for _, f in PATHS}
    assert named - declared - set(NOT_PATHS) == set(), "declare path=True (or list in NOT_PATHS)"
    assert {"data_dir", "model_dir", "output_dir", "images", "boxes", "workdir"} <= declared
    for cls, field in PATHS:
        (tmp_path / "afile").write_text("x")
        below = f"{tmp_path}/afile/x"
        for value, says in (("", f"--{field.name} is empty; expected a path"),
                            ("  ", f"--{field.name}='  ' is blank; expected a path"),
                            (below, f"--{field.name}={below}: {tmp_path}/afile is a file, "
                                    f"expected a directory there")):
            with pytest.raises(ValueError, match=f"^{re.escape(says)}$"):
                # The converters' configs check their ranges when built.
                configs.check_ranges(dataclasses.replace(
                    flag_engine._default_instance(cls), **{field.name: value}))


def test_a_declared_reason_is_part_of_the_refusal():
    for cls in (synthesize.SynthConfig, rig.RigConfig, h36m.H36MConfig):
        with pytest.raises(ValueError, match=r"^--clip_length=2: expected an integer >= 6 "
                                             r"\(room for an unsynchronized pair\)$"):
            configs.check_ranges(dataclasses.replace(flag_engine._default_instance(cls),
                                                     clip_length=2))


# Every binary built from a config: (module, its config, the required flags, the path it
# would create). The paths are fresh, so "not created" is checked by their absence.
BINARIES = [
    ("tf_synchro.pretrain", configs.PretrainConfig, ["--data_dir={T}/data", "--model_dir={O}"]),
    ("tf_synchro.finetune", configs.FinetuneConfig, ["--data_dir={T}/data", "--model_dir={O}"]),
    ("tf_synchro.evaluate", configs.EvaluateConfig, ["--data_dir={T}/data", "--model_dir={O}"]),
    ("tf_synchro.evaluate_pretext", configs.EvaluatePretextConfig,
     ["--model_dir={T}/run", "--output_dir={O}"]),
    ("tf_synchro.export", configs.ExportConfig, ["--model_dir={T}/run", "--export_dir={O}"]),
    ("tf_synchro.predict", configs.PredictConfig, ["--model={T}/run", "--output={O}"]),
    ("tf_synchro.demo", configs.DemoConfig, ["--workdir={O}"]),
    ("tf_synchro.experiments", configs.ExperimentsConfig, ["--workdir={O}"]),
    ("tfrecords_tools.synthesize", synthesize.SynthesizeRun, ["--output_dir={O}"]),
    ("tfrecords_tools.rig", rig.RigRun, ["--input_dir={T}/in", "--output_dir={O}"]),
    ("tfrecords_tools.h36m", h36m.H36MRun, ["--h36m_root={T}/in", "--output_dir={O}"]),
    ("tfrecords_tools.inspect", inspect.InspectConfig, ["{T}/data", "--contact_sheet={O}"]),
    ("tfrecords_tools.calibration", calibration.CalibrationRun,
     ["--input={T}/in.toml", "--output={O}"]),
]


def _flag_text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


BINARY_CASES = []
for _module, _cls, _required in BINARIES:
    _exclude = configs.FINETUNE_EXCLUDE if _cls is configs.FinetuneConfig else ()
    for _name, _tp, _default, _meta in configs.flag_fields(_cls, exclude=_exclude):
        _owner = next(c for c in CONFIGS for f in dataclasses.fields(c) if f.metadata is _meta)
        _field = next(f for f in dataclasses.fields(_owner) if f.metadata is _meta)
        for _value in _bad_values(_owner, _field) + (["  "] if _meta.get("path") else []):
            BINARY_CASES.append((_module, _required, _name, _flag_text(_value)))


@pytest.mark.parametrize("module,required,name,value", BINARY_CASES,
                         ids=[f"{m.rsplit('.', 1)[-1]}--{n}={v}" for m, _, n, v in BINARY_CASES])
def test_every_binary_refuses_an_out_of_range_flag_before_its_output_exists(
        module, required, name, value, tmp_path):
    out = tmp_path / "out"
    argv = [a.replace("{T}", str(tmp_path)).replace("{O}", str(out)) for a in required]
    code, _, err = cli.invoke(module, argv + [f"--{name}={value}"])
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and f"--{name}" in lines[0], err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- subjects

@pytest.fixture(scope="module")
def subjects_data(tmp_path_factory):
    from tests import testutil
    path = tmp_path_factory.mktemp("ranges") / "data"
    testutil.write_coded_dataset(path, subjects=("S1", "U01", "U02"), seqs=1, frames=8)
    return str(path)


def test_subjects_are_checked_against_the_manifest_patterns_included(subjects_data):
    from tfrecords_tools import dataset_io
    dataset_io.check_subjects_present(subjects_data, "train_subjects", ("S1", "U*"))
    with pytest.raises(ValueError) as e:
        dataset_io.check_subjects_present(subjects_data, "eval_subjects", ("S1", "S11"))
    assert str(e.value) == (f"--eval_subjects=S1,S11: subject 'S11' is not in {subjects_data} "
                            f"(it has S1,U01,U02)")
    with pytest.raises(ValueError, match=r"^--subjects=X\*: pattern 'X\*' matches no subject"):
        dataset_io.check_subjects_present(subjects_data, "subjects", ("X*",))
    assert dataset_io.expand_subjects(subjects_data, ["U*"], flag="train_subjects") == (
        "U01", "U02")


PAIRS = ["--d_min=1", "--d_max=4"]


@pytest.mark.parametrize("module,argv,flag", [
    ("tf_synchro.pretrain", ["--train_subjects=S1,U*", "--eval_subjects=S11", *PAIRS],
     "--eval_subjects=S11"),
    ("tf_synchro.pretrain", ["--train_subjects=S4", "--eval_subjects=", *PAIRS],
     "--train_subjects=S4"),
    ("tf_synchro.finetune", ["--label_subjects=S1,S9"], "--label_subjects=S1,S9"),
])
def test_an_absent_subject_stops_training_before_the_run_directory_exists(
        module, argv, flag, subjects_data, tmp_path):
    model_dir = tmp_path / "run"
    code, _, err = cli.invoke(module, [f"--data_dir={subjects_data}", f"--model_dir={model_dir}",
                                       "--train_steps=2", "--steps_per_checkpoint=1",
                                       *argv])
    assert code == 2, err
    assert err.splitlines() == [f"{module.rsplit('.', 1)[-1]}: error: {flag}: subject "
                                f"{flag.split('=')[1].split(',')[-1]!r} is not in "
                                f"{subjects_data} (it has S1,U01,U02)"], err
    assert not model_dir.exists()
