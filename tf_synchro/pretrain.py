r"""Self-supervised pre-training: Siamese sync/flip pretext task (Jenni & Favaro, ACCV 2020).

    python -m tf_synchro.pretrain --data_dir DIR --model_dir DIR \
        [--flagfile flags/pretrain_synthetic.flags] [--strategy mirrored]

Re-running the same command after a crash resumes from the last checkpoint in
``model_dir/backup``. At the end it writes ``model_dir/encoder.keras`` (for fine-tuning),
``model_dir/sync_flip.keras`` and the held-out pretext evaluation
(``pretext_eval.json``, ``sync_vs_gap.png``). The flags are the settings of
:class:`tf_synchro.configs.PretrainConfig`; the work is :func:`tf_synchro.tasks.pretext.train`.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from tf_synchro import configs
from tfrecords_tools.runtime import cli

BINARY = "tf_synchro.pretrain"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.PretrainConfig`."""
    configs.define_flags(configs.PretrainConfig, flag_values, binary=BINARY)


def config_from_flags(flag_values=None) -> configs.PretrainConfig:
    """The run config from parsed flags; ``--train_subjects`` patterns (``U*``) expanded.

    Raises:
      dataset_io.DatasetError: a ``--train_subjects`` pattern matches no subject (names
        the flag; plain names are checked by ``pretext.train`` after the settings).
    """
    from tfrecords_tools import dataset_io
    config = configs.from_flags(configs.PretrainConfig, flag_values)
    return dataclasses.replace(config, train_subjects=dataset_io.expand_subjects(
        config.data_dir, config.train_subjects, flag="train_subjects"))


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    configs.warn_deprecated(BINARY)
    from tf_synchro.tasks import pretext
    from tf_synchro import train_lib
    config = config_from_flags()
    # The strategy first: MultiWorkerMirroredStrategy must exist before any TF op runs.
    strategy = train_lib.make_strategy(config.runtime.strategy)
    pretext.train(config, strategy)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
