"""Independent self-play runs, one per seed, each from the same SFT adapters (notebook 05's further seeds).

A run trains both bots' adapters in place, so every further run first reloads the saved SFT weights into both bots'
adapters and their frozen references (`<bot>_ref`) and checks the weights' hashes against the ones taken before any
training. Run k goes to `<output_dir>/seed-<seed>/`, keeps one checkpoint and saves adapter snapshots only before the
first and after the last round (what notebook 06's ΔW change needs); like the first run it is resumable
(`resume="auto"`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

from rlxf.infra.identity import weights_hash
from rlxf.lm.adapters import adapter_parameters, load_adapter_weights
from rlxf.selfplay.trainer import SelfPlaySettings, SelfPlayTrainer


def adapter_hashes(model, names: Sequence[str]) -> dict[str, str]:
    """Each named adapter's weights hash (`rlxf.infra.identity.weights_hash`) -> {name: hash}."""
    missing = [name for name in names if not adapter_parameters(model, name)]
    if missing:
        raise ValueError(f"the model has no weights for the adapter(s) {missing}")
    return {name: weights_hash(adapter_parameters(model, name)) for name in names}


def restore_adapters(model, adapter_dirs: Mapping[str, str | Path]) -> dict[str, str]:
    """Reload each bot's saved weights (`adapter_dirs[bot]`) into its adapter and its frozen reference `<bot>_ref`
    (where the model has one) -> the bots' weight hashes."""
    for name, directory in adapter_dirs.items():
        for adapter in (name, f"{name}_ref"):
            if adapter == name or adapter in model.peft_config:
                load_adapter_weights(model, adapter, directory)
    return adapter_hashes(model, list(adapter_dirs))


def seed_run_dir(output_dir: str | Path, seed: int) -> Path:
    """Where `train_seed_runs` puts the run of `seed`: `<output_dir>/seed-<seed>`."""
    return Path(output_dir) / f"seed-{seed}"


def train_seed_runs(model, tokenizer, ppo_settings, settings: SelfPlaySettings, seeds: Sequence[int],
                    adapter_dirs: Mapping[str, str | Path], *, sft_hashes: Mapping[str, str],
                    rater=None) -> dict[int, dict]:
    """One self-play run per seed in `seeds`, each from the SFT adapters in `adapter_dirs` ({bot: directory}, in
    the bots' order) -> {seed: {"directory", "history" (one dict per round), "stopped_at" (round or None)}}.

    Before each run both bots' adapters and references are reloaded and their hashes must equal `sft_hashes` (taken
    before any training; a mismatch is an error naming the bot). `settings` and `ppo_settings` are the first run's:
    each run gets its seed, `seed_run_dir(settings.output_dir, seed)`, one kept checkpoint and snapshots before the
    first and after the last round. `rater`: the rater of the first run (its counts are reset, so that they belong to
    each run and are checkpointed with it), or None for each trainer's own generated rater.
    """
    if settings.output_dir is None:
        raise ValueError("train_seed_runs: SelfPlaySettings.output_dir is None; the seed runs need a directory")
    names = list(adapter_dirs)
    if set(sft_hashes) != set(names):
        raise ValueError(f"train_seed_runs: sft_hashes names the bots {sorted(sft_hashes)}, adapter_dirs {names}")
    runs = {}
    for seed in seeds:
        hashes = restore_adapters(model, adapter_dirs)
        differ = [name for name in names if hashes[name] != sft_hashes[name]]
        if differ:
            raise RuntimeError(f"seed {seed}: after reloading {[str(adapter_dirs[n]) for n in differ]} the weights of "
                               f"{differ} differ from the SFT weights the first run started from")
        if rater is not None:
            rater.reset_stats()
        directory = seed_run_dir(settings.output_dir, seed)
        run_settings = dataclasses.replace(settings, seed=seed, output_dir=str(directory),
                                           snapshot_every=max(settings.rounds, 1), keep_checkpoints=1)
        trainer = SelfPlayTrainer(model, tokenizer, dataclasses.replace(ppo_settings, seed=seed), run_settings,
                                  names=names, rater=rater)
        history = trainer.train(resume="auto")
        runs[seed] = {"directory": directory, "history": history, "stopped_at": trainer.stopped_at}
    return runs
