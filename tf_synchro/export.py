r"""Exports a fine-tuned pose model (or its encoder) for TF Serving, ONNX and LiteRT.

    python -m tf_synchro.export --model_dir=/tmp/pose_ssl --export_dir=/tmp/serving/pose \
        [--formats=saved_model,onnx,tflite] [--tflite_quantize]

writes ``/tmp/serving/pose/<version>/`` (the layout TF Serving watches; the next free
integer unless ``--version`` is given), with preprocessing inside the graph (clients send
raw uint8 crops or JPEG bytes), and ``<version>.onnx`` / ``<version>.tflite`` beside it,
each checked in its own runtime against the SavedModel. The flags are the settings of
:class:`tf_synchro.configs.ExportConfig`; the work (and the signatures) are
:mod:`tf_synchro.deploy.serving`.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

from tf_synchro import configs
from tfrecords_tools.runtime import cli

BINARY = "tf_synchro.export"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.ExportConfig`."""
    configs.define_flags(configs.ExportConfig, flag_values, binary=BINARY)


def run(config: configs.ExportConfig) -> str:
    """Exports and prints what was written; returns ``export_dir/<version>``."""
    from tf_synchro.deploy import artefacts, serving
    path = serving.export(config.model_dir, config.export_dir, config.version, config.what,
                          config.format_options)
    print(f"exported {config.what} model to {path} (signatures: serving_default, "
          f"{serving.SIGNATURE_JPEG})")
    with open(os.path.join(path, artefacts.METADATA_FILE)) as fh:
        formats = json.load(fh).get("formats", {})
    for key, entry in formats.items():
        if key != "saved_model":
            mpjpe = (f"; MPJPE {entry['mpjpe_mm']:.1f} mm vs {entry['reference_mpjpe_mm']:.1f} "
                     f"mm ({100 * entry['mpjpe_increase']:+.2f}%)" if "mpjpe_mm" in entry else "")
            print(f"  {key}: {os.path.join(config.export_dir, entry['file'])}, max difference "
                  f"{entry['max_abs_diff_mm']:.3g} mm{mpjpe} ({entry['runtime']})")
    return path


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    run(configs.from_flags(configs.ExportConfig))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
