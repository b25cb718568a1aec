"""Dataset writing on Apache Beam runners (tfrecords_tools.beam_io): the runner checks, and,
where Apache Beam is installed (requirements-beam.txt, which CI installs; README "More
than one machine"), the DirectRunner writes the tiny dataset byte for byte as the local
writer does, and a failed or killed Beam run resumes."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import testutil
from tests.testutil import TINY_ACTIONS
from tfrecords_tools import beam_io, dataset_io, synthesize
from tfrecords_tools.runtime import cli, fileio, locks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    import apache_beam  # noqa: F401
    NO_BEAM = ""
except ImportError:
    NO_BEAM = ("apache_beam is not importable (optional: "
               "pip install -r requirements-beam.txt)")
needs_beam = pytest.mark.skipif(bool(NO_BEAM), reason=NO_BEAM)


def test_runner_and_options_are_checked_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    for runner, options, message in [
            ("cluster", (), "--runner=cluster: expected one of local,direct,prism"),
            ("local", "--direct_num_workers=2", "--beam_options=--direct_num_workers=2: only "
                                                "with a Beam --runner"),
            ("direct", "direct_num_workers=2", "--beam_options=direct_num_workers=2: expected Beam "
                                               "flags (--name=value)")]:
        with pytest.raises(ValueError, match="^" + message.replace("(", r"\(")
                           .replace(")", r"\)")):
            synthesize.generate(str(out), synthesize.SynthConfig(), runner=runner,
                                beam_options=options, log=lambda _: None)
    if NO_BEAM:
        with pytest.raises(ValueError, match="^--runner=direct needs Apache Beam"):
            beam_io.check_runner("direct")
    with pytest.raises(dataset_io.DatasetError, match="^--output_dir=gs://b/d: expected a "
                                                      "filesystem path"):
        synthesize.generate("gs://b/d", synthesize.SynthConfig(), log=lambda _: None)
    assert not out.exists() and not os.path.exists("gs:")


def _sha256s(data_dir):
    names = sorted(n for n in os.listdir(data_dir) if n.endswith(dataset_io.SHARD_SUFFIX))
    return {n: fileio.sha256_file(os.path.join(data_dir, n)) for n in names}


@needs_beam
def test_direct_runner_writes_the_tiny_dataset_as_the_local_writer(tiny_dataset, tmp_path,
                                                                    monkeypatch):
    """Same settings as the session's tiny dataset (local writer): same shard names, same
    bytes, same manifest but its date; the manifest is written once, after every shard."""
    writes = []
    real = fileio.write_json_atomic
    monkeypatch.setattr(fileio, "write_json_atomic",
                        lambda path, obj: (writes.append(os.path.basename(path)),
                                           real(path, obj))[1])
    out = str(tmp_path / "beam")
    config = synthesize.SynthConfig(actions=TINY_ACTIONS, takes=1, num_frames=100,
                                    image_size=64, clip_length=64, background=False, seed=0)
    manifest = synthesize.generate(out, config, runner="direct", log=lambda _: None,
                                   beam_options="--direct_num_workers=2 "
                                                "--direct_running_mode=multi_threading")
    assert _sha256s(out) == _sha256s(tiny_dataset) and len(_sha256s(out)) >= 14
    local = dataset_io.load_manifest(tiny_dataset)
    assert {**manifest, "created": None} == {**local, "created": None}
    assert writes.count(dataset_io.MANIFEST) == 1 and writes[-1] == dataset_io.MANIFEST
    assert writes.count(dataset_io.DATASET_INFO) == 1
    assert len([w for w in writes if w.endswith(".tfrecord.json")]) == len(_sha256s(out))


def _flaky_coded(payload):
    """Writes S1's shard; S5's fails after S1's is complete (while the marker file exists),
    having started its temporary file: a Beam run that dies midway."""
    subject, marker = payload[0], payload[-1]
    if subject == "S5" and os.path.exists(marker):
        done = os.path.join(os.path.dirname(marker), "out", "S1.tfrecord.json")
        deadline = time.time() + 120  # A hang guard only.
        while not os.path.exists(done) and time.time() < deadline:
            time.sleep(0.05)
        yield testutil.coded_clip(subject, 0)
        raise RuntimeError("worker lost")
    yield from testutil._produce_coded(payload[:-1])


@needs_beam
def test_failed_beam_run_keeps_finished_shards_and_the_rerun_skips_them(tmp_path):
    marker = tmp_path / "fail"
    marker.write_text("")
    out = str(tmp_path / "out")
    tasks = [dataset_io.ShardTask(s, (s, 2, testutil.CODED_V, testutil.CODED_T,
                                      testutil.CODED_FRAME_STEP, None, 5, str(marker)))
             for s in ("S1", "S5")]
    kw = dict(writer="test_beam", settings={}, tasks=tasks, producer=_flaky_coded,
              runner="direct",
              beam_options=["--direct_num_workers=2", "--direct_running_mode=multi_threading"])
    with pytest.raises(Exception, match="worker lost"):
        dataset_io.write_dataset(out, log=lambda _: None, **kw)
    assert sorted(os.listdir(out)) == ["S1.tfrecord", "S1.tfrecord.json", "dataset.json"]
    first = os.stat(os.path.join(out, "S1.tfrecord"))

    marker.unlink()
    logs = []
    manifest = dataset_io.write_dataset(out, log=logs.append, **kw)
    assert "resuming: 1 of 2 shards already complete" in logs
    assert os.stat(os.path.join(out, "S1.tfrecord")).st_mtime_ns == first.st_mtime_ns
    assert [s["file"] for s in manifest["shards"]] == ["S1.tfrecord", "S5.tfrecord"]
    assert manifest["totals"]["num_records"] == 4
    assert json.load(open(os.path.join(out, "manifest.json")))["totals"]["num_records"] == 4


# The tiny dataset's settings (tests/conftest.py) as the binary's flags.
TINY_FLAGS = [f"--actions={','.join(TINY_ACTIONS)}", "--takes=1", "--num_frames=100",
              "--image_size=64", "--clip_length=64", "--nobackground", "--seed=0",
              "--runner=direct",
              "--beam_options=--direct_num_workers=2 --direct_running_mode=multi_threading"]


def _complete(out) -> dict:
    """(inode, mtime) of each shard that has its sidecar (written last: the shard is done)."""
    names = [n[:-len(".json")] for n in os.listdir(out) if n.endswith(".tfrecord.json")]
    return {n: (os.stat(os.path.join(out, n)).st_ino, os.stat(os.path.join(out, n)).st_mtime_ns)
            for n in names}


@needs_beam
def test_sigkilled_beam_run_resumes_byte_identical_skipping_finished_shards(tiny_dataset,
                                                                             tmp_path):
    """``python -m tfrecords_tools.synthesize --runner=direct`` SIGKILLed once some but
    not all shards are complete; the same command again keeps those (same inode and
    mtime), redoes the rest, and ends with the local writer's bytes, no temporary left."""
    out = tmp_path / "beam"
    argv = [f"--output_dir={out}", *TINY_FLAGS]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")])))
    with open(tmp_path / "killed.err", "w") as err:
        # Its own session: the SIGKILL goes to the whole group, as a lost machine's would.
        proc = subprocess.Popen([sys.executable, "-m", "tfrecords_tools.synthesize", *argv],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 300  # A hang guard only.
        while not (out.is_dir() and len(_complete(out)) >= 2):
            assert proc.poll() is None, (tmp_path / "killed.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "no shard completed in time"
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    kept = _complete(out)
    total = len(_sha256s(tiny_dataset))
    assert 2 <= len(kept) < total and not (out / dataset_io.MANIFEST).exists()
    torn = [n for n in os.listdir(out) if ".tmp-" in n]  # The shards it was writing.

    code, stdout, stderr = cli.invoke("tfrecords_tools.synthesize", argv)
    assert code == 0, stderr[-3000:]
    assert f"resuming: {len(kept)} of {total} shards already complete" in stdout, stdout
    if torn:
        assert f"removed {len(torn)} temporary file(s) left by interrupted runs" in stdout
    assert {n: v for n, v in _complete(out).items() if n in kept} == kept
    assert _sha256s(out) == _sha256s(tiny_dataset)
    assert {**dataset_io.load_manifest(str(out)), "created": None} == \
        {**dataset_io.load_manifest(tiny_dataset), "created": None}
    leftovers = [n for n in os.listdir(out) if ".tmp-" in n or n == locks.LOCK_FILE]
    assert not leftovers, leftovers
