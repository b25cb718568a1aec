r"""Fine-tunes an encoder (pretrained or from scratch) into a monocular 3D pose estimator.

    python -m tf_synchro.finetune --flagfile=flags/finetune_synthetic.flags \
        --data_dir=/tmp/synth --model_dir=/tmp/pose_ssl --init_from=/tmp/pretrain

The model regresses the 17 joints, root-relative, in the camera frame (mm) from one crop
(:mod:`tf_synchro.models.pose`). As in the paper: the stem and the first ``--freeze_blocks``
residual stages stay frozen, AdamW (weight decay 1e-4) with a cosine schedule 1e-4 -> 1e-7.
Re-running the same command resumes. When training ends, ``model_dir/pose_model.keras`` is
written and ``config.json`` marks the run finished; :mod:`tf_synchro.evaluate` and
:mod:`tf_synchro.export` read both. The flags are the settings of
:class:`tf_synchro.configs.FinetuneConfig` (``--image_size`` and ``--head_units`` are the
deprecated spellings of ``--input_size`` and ``--pose_head_units``); the work is
:func:`tf_synchro.tasks.pose3d.train`.
"""
from __future__ import annotations

from typing import Sequence

from tf_synchro import configs
from tfrecords_tools.runtime import cli

BINARY = "tf_synchro.finetune"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.FinetuneConfig`."""
    configs.define_flags(configs.FinetuneConfig, flag_values, exclude=configs.FINETUNE_EXCLUDE,
                         binary=BINARY)


def config_from_flags(flag_values=None) -> configs.FinetuneConfig:
    return configs.from_flags(configs.FinetuneConfig, flag_values,
                              exclude=configs.FINETUNE_EXCLUDE)


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    configs.warn_deprecated(BINARY)
    from tf_synchro.tasks import pose3d
    from tf_synchro import train_lib
    config = config_from_flags()
    # The strategy first: MultiWorkerMirroredStrategy must exist before other TF ops run.
    strategy = train_lib.make_strategy(config.runtime.strategy)
    pose3d.train(config, strategy)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
