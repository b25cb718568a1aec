r"""Runs a trained pose model on your own video or images: 3D joints per frame.

    python -m tf_synchro.predict --model=models/pose/1 --video=me.mp4 --output=poses.json \
        --overlay=me_pose.mp4
    python -m tf_synchro.predict --model=runs/pose_ssl --images='shots/*.png' \
        --boxes=boxes.csv --output=poses.npz
    python -m tf_synchro.predict --model=models/pose/1.int8.tflite --video=cam.mp4 \
        --output=poses.json --overlay=out.mp4 --smooth --intrinsics=1145,1144,512,515

``--model`` is an exported version directory (``tf_synchro.export``), its ``.onnx`` /
``.tflite`` file, or a finished fine-tuning run directory. Boxes come from ``--boxes``,
else the median background (``--static_camera``), else the whole frame; crops are made
exactly as the training data was. Output: root-relative 3D joints in mm in the camera
frame per frame. Exit status 2: bad flags; 1: bad data. The flags are the settings of
:class:`tf_synchro.configs.PredictConfig`; the work is :func:`tf_synchro.deploy.inference.run`
(how boxes and crops are made: its docstring; the overlay's geometry and the smoothing:
:mod:`tf_synchro.deploy.overlay`).
"""
from __future__ import annotations

from typing import Sequence

from tf_synchro import configs
from tfrecords_tools.runtime import cli

BINARY = "tf_synchro.predict"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.PredictConfig`."""
    configs.define_flags(configs.PredictConfig, flag_values, binary=BINARY)


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    from tf_synchro.deploy import inference
    config = configs.from_flags(configs.PredictConfig)
    result = inference.run(config)
    print(f"wrote {result['num_frames']} frames of 3D joints (mm) to {config.output}; boxes: "
          f"{result['box_source']}, no person found in {result['num_frames_without_person']}"
          + (f"; overlay: {config.overlay}" if config.overlay else ""))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
