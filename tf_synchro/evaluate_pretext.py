r"""Re-evaluates the pretext task of a finished pre-training run on held-out subjects.

    python -m tf_synchro.evaluate_pretext --model_dir DIR [--data_dir DIR] [--subjects S9,S11]
        [--gap_sampling=clip|uniform] [--d_min=4] [--d_max=128]

Writes ``pretext_eval.json`` and ``sync_vs_gap.png`` (the paper's Fig. 4) into
``--output_dir`` (default: the run). By default the pairs are drawn as the run drew its
training pairs (``config.json``); ``--gap_sampling``, ``--d_min`` and ``--d_max`` score runs
trained with different pair settings on one common set of pairs. The flags are the settings
of :class:`tf_synchro.configs.EvaluatePretextConfig`; the work is
:func:`tf_synchro.tasks.pretext.evaluate` (what the metrics mean: :mod:`tf_synchro.tasks.pretext`).
"""
from __future__ import annotations

import dataclasses
import json
from typing import Sequence

from tf_synchro import configs
from tfrecords_tools.runtime import cli

BINARY = "tf_synchro.evaluate_pretext"


def define_flags(flag_values=None) -> None:
    """The binary's flags: one per setting of :class:`configs.EvaluatePretextConfig`."""
    configs.define_flags(configs.EvaluatePretextConfig, flag_values, binary=BINARY)


def run(config: configs.EvaluatePretextConfig) -> dict:
    """Evaluates the run in ``config.model_dir``, writes the report and returns the results.

    Raises:
      ValueError: naming the flag, file or run at fault.
    """
    from tf_synchro import run_dir
    from tf_synchro.tasks import pretext
    from tfrecords_tools.runtime import locks
    config.check()
    model, record = run_dir.load_pretrain_run(config.model_dir)
    record.pair_config()  # Raises: the run records no pair settings.
    record = dataclasses.replace(record, pairs=dataclasses.replace(
        record.pairs, **config.pair_overrides()))
    try:
        record.pair_config().validate()
    except ValueError as e:
        raise ValueError(f"{e} (the run in {config.model_dir} with the overrides)") from e
    results = pretext.evaluate(run_dir.LoadedModel(model, record, config.model_dir),
                               config.data_dir or record.data_dir, config.eval,
                               config.data_check)
    output_dir = config.output_dir or config.model_dir
    locks.clean_stale_temps(output_dir)
    for path in pretext.write_report(results, output_dir):
        print(f"wrote {path}")
    return results


def main(argv: Sequence[str]) -> None:
    cli.check_no_arguments(argv)
    results = run(configs.from_flags(configs.EvaluatePretextConfig))
    print(json.dumps({k: v for k, v in results.items() if k != "sync_accuracy_by_gap"}))


if __name__ == "__main__":
    define_flags()
    cli.run(main)
