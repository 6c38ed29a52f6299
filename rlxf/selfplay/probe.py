"""A memory probe of self-play: one round of two bots, or of one bot of the same shape, for
`rlxf.infra.memory.peak_memory`
(`peak_memory("rlxf.selfplay:memory_probe", {...})`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.data.prompts import POLITICAL_QUESTIONS
from rlxf.lm.generation import chat_prompt
from rlxf.selfplay.generated_rater import GeneratedRater
from rlxf.selfplay.trainer import SelfPlaySettings, SelfPlayTrainer


def memory_probe(bots: int, policy_model: str, adapter_dirs: Sequence[str], ppo: dict, selfplay: dict,
                 names: Sequence[str] = ("democrat", "republican")) -> dict:
    """One round of PPO work on `policy_model` with 2 bots (self-play) or 1 (a single-bot run of the same shape).

    Meant for `rlxf.infra.memory.peak_memory` (a fresh process each). Both shapes generate the same number of replies
    one at a time, rate each with the same `GeneratedRater`, and take PPO steps of the same batch size: two bots play
    one
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
    ppo_settings = PPOSettings(**{**ppo, "output_dir": None, "progress_bar": False})
    settings = SelfPlaySettings(**{**selfplay, "rounds": 1, "output_dir": None, "progress_bar": False})
    if bots == 2:
        trainer = SelfPlayTrainer(model, tokenizer, ppo_settings, settings, names=names)
        metrics = trainer.train_round()
        return {"bots": 2, "turns": metrics["turns"], "steps": sum(t.step_count for t in trainer.trainers.values())}
    trainer = PPOTrainer(model, tokenizer, ppo_settings, adapter_name=names[0])
    rater = GeneratedRater.from_model(trainer.model, tokenizer, max_new_tokens=settings.rating_max_new_tokens)
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
