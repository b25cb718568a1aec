"""Apache Beam runners for the dataset writers (docs/DESIGN.md §3).

``--runner=local`` (the default) writes shards in this machine's processes
(:func:`tfrecords_tools.dataset_io.write_dataset`); ``direct``, ``prism``, ``flink``,
``spark`` or ``dataflow`` hand the same shard tasks to an Apache Beam pipeline on that
runner, with ``--beam_options`` (Beam's own flags, e.g. ``--direct_num_workers=4`` or
``--project=... --region=... --temp_location=gs://...``) passed through.

What stays the same whatever the runner:

* one shard producer (``tfrecords_tools.dataset_io._write_shard``): the same shard
  names and bytes (sha256) for the same settings;
* a shard is written under a temporary name and renamed (``tf.io.gfile``); its sidecar,
  written last with the shard's sha256, marks it complete, so a retried bundle or a
  re-run skips finished shards and redoes torn ones;
* the dataset lock, ``dataset.json`` and ``manifest.json`` belong to the launching
  process: the manifest is written once, after the pipeline finished every shard.

Apache Beam is optional (``requirements-beam.txt``, not in ``requirements.txt``): Beam 2.77
needs protobuf < 7 while the main requirements resolve protobuf 7. One protobuf, 6.33.6,
serves both (TensorFlow 2.21 needs >= 6.31.1), so Beam installs in a virtual environment
over the system packages with that pin (README, "More than one machine").
"""
from __future__ import annotations

import dataclasses
import shlex
from typing import Any, Callable, Iterable, Sequence

from tfrecords_tools.runtime.flags import setting

LOCAL = "local"
RUNNERS = (LOCAL, "direct", "prism", "flink", "spark", "dataflow")
BEAM_RUNNERS = {"direct": "DirectRunner", "prism": "PrismRunner", "flink": "FlinkRunner",
                "spark": "SparkRunner", "dataflow": "DataflowRunner"}


@dataclasses.dataclass(frozen=True)
class WriterRunner:
    """Base of a dataset writer binary's run settings: where its shards are made (not a
    dataset setting: every runner writes the same bytes).

    Attributes:
      runner: local processes, or an Apache Beam runner.
      beam_options: Beam's own pipeline flags, passed through.
    """

    runner: str = setting(LOCAL, "Where shards are written: local (--num_workers processes "
                          "here) or an Apache Beam runner (requirements-beam.txt).",
                          choices=RUNNERS)
    beam_options: str = setting("", "Apache Beam pipeline flags for a Beam --runner, as one "
                                "string, e.g. \"--direct_num_workers=4\" or \"--project=P "
                                "--region=R --temp_location=gs://B/tmp\".")


def split_options(beam_options: str | Sequence[str]) -> list[str]:
    """``--beam_options`` as a list of Beam flags (a string is split like a shell)."""
    if isinstance(beam_options, str):
        return shlex.split(beam_options)
    return list(beam_options)


def check_runner(runner: str, beam_options: str | Sequence[str] = ()) -> None:
    """Checks ``--runner`` and ``--beam_options`` before anything is written.

    Raises:
      ValueError: ``--runner=...`` unknown, or not local and Apache Beam is not installed;
        ``--beam_options=...`` given with the local runner or not a list of ``--flags``.
    """
    options = split_options(beam_options)
    if runner not in RUNNERS:
        raise ValueError(f"--runner={runner}: expected one of {','.join(RUNNERS)}")
    if runner == LOCAL:
        if options:
            raise ValueError(f"--beam_options={' '.join(options)}: only with a Beam "
                             f"--runner ({','.join(RUNNERS[1:])})")
        return
    bad = [o for o in options if not o.startswith("--")]
    if bad:
        raise ValueError(f"--beam_options={' '.join(options)}: expected Beam flags "
                         f"(--name=value), got {bad[0]!r}")
    try:
        import apache_beam  # noqa: F401
    except ImportError:
        raise ValueError(f"--runner={runner} needs Apache Beam, which is not installed: "
                         f"pip install -r requirements-beam.txt in a virtual environment "
                         f"(README, 'More than one machine')") from None


def write_shards(output_dir: str, tasks: Iterable, producer: Callable[[Any], Iterable],
                 write_one: Callable[[Any, str, Callable], Any], runner: str,
                 beam_options: str | Sequence[str] = (),
                 log: Callable[[str], None] = print) -> None:
    """Writes the shards of ``tasks`` in one Beam pipeline on ``runner``; returns when the
    pipeline finished (the caller reads the shards' sidecars and writes the manifest).

    ``write_one(task, output_dir, producer)`` (picklable, top level) writes one shard
    unless a complete one is there: a retried bundle, or a shard of an earlier run.

    Raises:
      Whatever the runner raises for a failed pipeline; finished shards stay complete.
    """
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    tasks = list(tasks)
    options = PipelineOptions(split_options(beam_options), runner=BEAM_RUNNERS[runner])
    log(f"Beam {BEAM_RUNNERS[runner]}: {len(tasks)} shard(s) to write")
    with beam.Pipeline(options=options) as pipeline:
        _ = (pipeline
             | "ShardTasks" >> beam.Create(tasks)
             # One shard a work item: without it the runner may fuse every shard into the
             # bundle of the Create and write them one after another on one worker.
             | "Spread" >> beam.Reshuffle()
             | "WriteShard" >> beam.Map(write_one, output_dir, producer))
