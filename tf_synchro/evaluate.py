r"""Evaluates a fine-tuned pose model with the standard protocol and writes a report.

    python -m tf_synchro.evaluate --model_dir=/tmp/pose_ssl --data_dir=/tmp/synth \
        --subjects=S9,S11 --frame_step=64 --output_json=/tmp/pose_ssl/eval.json

``--model_dir`` (or ``--model``, predict's name for it) is a finished fine-tuning run, or a
deployed artefact of one
(:mod:`tf_synchro.deploy.artefacts`): an export version directory (``exports/pose/1``), its
``1.onnx``, ``1.tflite`` or ``1.int8.tflite``; an artefact is given the stored uint8
crops through its ``serving_default`` signature, exactly as a client calls it, and its report
goes beside it (``exports/pose/1.int8.tflite.eval.json``) unless ``--output_json`` says.

    python -m tf_synchro.evaluate --model=/tmp/exports/pose/1.int8.tflite \
        --data_dir=/tmp/synth --subjects=S9,S11

Protocol (docs/DESIGN.md §2): test subjects S9 and S11, every frame whose original frame
number is a multiple of 64, all cameras; MPJPE, N-MPJPE and PA-MPJPE in mm, as the mean
over frames and over actions, with breakdowns per action, joint, camera and subject, and
held-out motion families reported apart under ``unseen_motion``; a PNG of a few examples.
The flags are the settings of :class:`tf_synchro.configs.EvaluateConfig`; the model is
loaded by its kind (:func:`tf_synchro.deploy.artefacts.load_for_evaluation`), the work is
:func:`tf_synchro.tasks.pose3d.evaluate`.
"""
from __future__ import annotations

import os
from typing import Sequence

from tf_synchro import configs
from tfrecords_tools.runtime import cli

BINARY = "tf_synchro.evaluate"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.EvaluateConfig`."""
    configs.define_flags(configs.EvaluateConfig, flag_values, binary=BINARY)


def run(config: configs.EvaluateConfig) -> dict:
    """Evaluates, writes the report and the figure, and returns the report."""
    import dataclasses
    from tf_synchro.deploy import artefacts
    from tf_synchro.tasks import pose3d
    from tfrecords_tools.runtime import locks
    config.check()
    output_json = config.eval.output_json or artefacts.default_report_path(config.model_dir)
    output_png = config.eval.output_png or os.path.splitext(output_json)[0] + ".png"
    locks.clean_stale_temps(os.path.dirname(os.path.abspath(output_json)))
    trained = artefacts.load_for_evaluation(config.model_dir, "--model_dir")
    report = pose3d.evaluate(trained, config.data_dir, dataclasses.replace(
        config.eval, output_json=output_json, output_png=output_png), config.data_check)
    print(pose3d.format_report(report))
    print(f"wrote {output_json} and {output_png}")
    return report


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    run(configs.from_flags(configs.EvaluateConfig))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
