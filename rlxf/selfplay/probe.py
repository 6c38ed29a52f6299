"""A memory probe of self-play: one round of two bots, or of one bot of the same shape, for
`rlxf.infra.memory.peak_memory`: `peak_memory("rlxf.selfplay:memory_probe", {"bots": 2, **probe_arguments(...)})`
with the run's own typed settings (`probe_arguments` serialises them, dtype included)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.data.prompts import POLITICAL_QUESTIONS
from rlxf.infra.identity import config_fingerprint
from rlxf.lm.generation import chat_prompt
from rlxf.selfplay.generated_rater import GeneratedRater
from rlxf.selfplay.trainer import SelfPlaySettings, SelfPlayTrainer

# What a probe never does, whatever the run's settings say: write files, draw progress bars, report to a tracker.
_PROBE_OVERRIDES = {"output_dir": None, "progress_bar": False, "report_to": "none"}


def probe_arguments(policy_model: str, adapter_dirs: Sequence[str | Path], ppo_settings: PPOSettings,
                    settings: SelfPlaySettings, names: Sequence[str] = ("democrat", "republican")) -> dict:
    """`memory_probe`'s arguments but `bots`, as JSON data (`peak_memory` sends them to a fresh process): the run's
    PPOSettings and SelfPlaySettings serialised whole (`rlxf.infra.checkpoint.config_fingerprint`), dtype included."""
    if not isinstance(ppo_settings, PPOSettings) or not isinstance(settings, SelfPlaySettings):
        raise ValueError(f"probe_arguments needs a PPOSettings and a SelfPlaySettings, got "
                         f"{type(ppo_settings).__name__} and {type(settings).__name__}")
    return {"policy_model": policy_model, "adapter_dirs": [str(d) for d in adapter_dirs], "names": list(names),
            "ppo": config_fingerprint(ppo_settings), "selfplay": config_fingerprint(settings)}


def _settings(cls, data: Mapping, what: str, **overrides):
    """`cls` (a settings dataclass) from JSON data: lists back to tuples; an unknown field is an error naming it."""
    if isinstance(data, cls):
        data = dataclasses.asdict(data)
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"memory_probe({what}=...): {unknown} are not fields of {cls.__name__}")
    values = {key: tuple(value) if isinstance(value, list) else value for key, value in data.items()}
    return cls(**{**values, **overrides})


def memory_probe(bots: int, policy_model: str, adapter_dirs: Sequence[str], ppo: Mapping | PPOSettings,
                 selfplay: Mapping | SelfPlaySettings, names: Sequence[str] = ("democrat", "republican")) -> dict:
    """One round of PPO work on `policy_model` with 2 bots (self-play) or 1 (a single-bot run of the same shape).

    Meant for `rlxf.infra.memory.peak_memory` (a fresh process each; `probe_arguments` gives the arguments from the
    run's settings). `ppo` and `selfplay`: PPOSettings / SelfPlaySettings or their fields as a dict; the probe plays
    one round, writes nothing and reports to no tracker. Both shapes generate the same number of replies one at a
    time, rate each with the same `GeneratedRater`, and take PPO steps of the same batch size: two bots play one
    `SelfPlayTrainer` round; one bot answers the debates' issues and is rated by itself.
    """
    from rlxf.lm.adapters import load_adapter
    from rlxf.lm.models import load_causal_lm

    if bots not in (1, 2):
        raise ValueError(f"bots must be 1 or 2, got {bots!r}")
    if len(adapter_dirs) != 2 or len(names) != 2:
        raise ValueError("memory_probe needs the two bots' adapter_dirs and names (the single-bot run uses the first)")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    model, tokenizer = load_causal_lm(policy_model)
    for index in range(bots):
        model = load_adapter(model, adapter_dirs[index], names[index])
    ppo_settings = _settings(PPOSettings, ppo, "ppo", **_PROBE_OVERRIDES)
    settings = _settings(SelfPlaySettings, selfplay, "selfplay", rounds=1, **_PROBE_OVERRIDES)
    if bots == 2:
        trainer = SelfPlayTrainer(model, tokenizer, ppo_settings, settings, names=names)
        metrics = trainer.train_round()
        return {"bots": 2, "turns": metrics["turns"], "steps": sum(t.step_count for t in trainer.trainers.values())}
    trainer = PPOTrainer(model, tokenizer, ppo_settings, adapter_name=names[0])
    rater = GeneratedRater.from_model(trainer.model, tokenizer, max_new_tokens=settings.rating_max_new_tokens,
                                      dtype=trainer.precision)
    turns = settings.debates_per_round * settings.max_exchanges  # one bot's batch in a self-play round
    queries, responses, rewards = [], [], []
    for index in range(turns):
        issue = POLITICAL_QUESTIONS[index % len(POLITICAL_QUESTIONS)]
        query, response, text = trainer.generate([chat_prompt(tokenizer, issue)])
        queries += query
        responses += response
        rewards.append(GeneratedRater.normalise(rater.rate(text[0], adapter=names[0]).value))
    trainer.step(queries, responses, rewards)
    return {"bots": 1, "turns": turns, "steps": trainer.step_count}
