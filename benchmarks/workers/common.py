"""What both workers share: the task (policy, reward model, prompts), scoring, evaluation and the common record.

Imported by a worker before its baseline memory is read, so the stack both libraries need (torch, transformers,
peft, rlxf.lm.models, rlxf.algos.ppo) counts in both baselines; they then differ by what each library itself imports.
Every rlxf name the benchmark's workers use is imported here, and only here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import random
import statistics
import sys

import numpy as np
import peft  # noqa: F401  (imported for both libraries alike: see above)
import torch
from transformers import GenerationConfig

from benchmarks.workers.settings import BenchSettings
from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.infra.memory import PhasePeak
from rlxf.lm.generation import collate, keeps_logits
from rlxf.lm.models import load_causal_lm, load_classifier
from rlxf.lm.precision import precision

# Re-exported to the workers (besides what is defined here): their only way to rlxf.
__all__ = ["PhasePeak", "PPOSettings", "PPOTrainer", "keeps_logits", "load_classifier"]

REWARD_HEAD_SEED = 1234  # the reward model's linear head: the same in every subprocess
EVAL_SEED_OFFSET = 10_000  # evaluation sampling uses seed + this, the same for both libraries
# Openings of movie reviews (IMDB style), continued by the policy; asked through the model's chat template.
REVIEW_OPENINGS = (
    "I went into this movie expecting very little, and",
    "The acting in this film was",
    "After twenty minutes I had already decided that this movie",
    "My whole family watched this on a rainy Sunday and",
)


def start_worker(settings: dict) -> BenchSettings:
    """The settings a worker was given, validated; torch set to their thread count."""
    bench = BenchSettings(**settings)
    torch.set_num_threads(bench.threads)
    return bench


def phase_memory(train_peak: PhasePeak) -> dict:
    """The training phase's peak (the driver adds the whole run's peak and the baseline, measured by peak_memory)."""
    return {"train_peak_rss_mb": train_peak.peak_bytes / 2**20, "train_peak_reset": train_peak.reset,
            "measure": train_peak.measure}


def set_all_seeds(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def load_task(settings: BenchSettings):
    """(policy, tokenizer, reward_model, prompt_ids): the same objects in every worker."""
    policy, tokenizer = load_causal_lm(settings.model, device="cpu", dtype="fp32")
    reward_model, reward_tokenizer = load_classifier(settings.model, num_labels=1, device="cpu", dtype="fp32")
    if reward_tokenizer.get_vocab() != tokenizer.get_vocab() or reward_tokenizer.pad_token_id != tokenizer.pad_token_id:
        raise ValueError(f"{settings.model}: the reward model's tokenizer differs from the policy's (TRL needs one)")
    if not hasattr(reward_model, "score") or reward_model.score.out_features != 1:
        raise ValueError(f"{settings.model}: expected a decoder classifier with a 1-output `score` head, got "
                         f"{type(reward_model).__name__}")
    # A fixed random direction in hidden space: a reward both libraries can push, identical in every process.
    generator = torch.Generator().manual_seed(REWARD_HEAD_SEED)
    hidden = reward_model.score.in_features
    with torch.no_grad():
        reward_model.score.weight.copy_(torch.randn(1, hidden, generator=generator) / math.sqrt(hidden))
    reward_model.requires_grad_(False)
    return policy, tokenizer, reward_model, prompt_token_ids(tokenizer, settings.batch_size)


def prompt_token_ids(tokenizer, n: int) -> list[list[int]]:
    """The review openings as chat prompts (or plain text without a chat template), tokenised once for both."""
    prompts = []
    for i in range(n):
        opening = REVIEW_OPENINGS[i % len(REVIEW_OPENINGS)]
        if tokenizer.chat_template:
            text = tokenizer.apply_chat_template(
                [{"role": "user", "content": f"Continue this movie review in one or two sentences: {opening}"}],
                tokenize=False, add_generation_prompt=True)
            prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            prompts.append(tokenizer(opening)["input_ids"])
    return prompts


def score_responses(reward_model, queries, responses, pad_id: int):
    """Reward-model score of each query + response at its last token (TRL's get_reward on the same tokens)."""
    batch = collate([torch.as_tensor(q) for q in queries], [torch.as_tensor(r) for r in responses], pad_id)
    with torch.no_grad():
        hidden = reward_model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                    position_ids=batch["position_ids"], use_cache=False).last_hidden_state
        last = batch["input_ids"].shape[1] - batch["response_mask"].shape[1] + batch["response_mask"].sum(1).long() - 1
        return reward_model.score(hidden[torch.arange(len(queries)), last]).squeeze(-1)


def response_tokens(generated, eos_id: int) -> list:
    """Generated rows cut after the first EOS (kept); rows without EOS are kept whole."""
    cut = []
    for row in generated:
        is_eos = row == eos_id
        cut.append(row[: int(is_eos.nonzero()[0]) + 1] if is_eos.any() else row)
    return [torch.as_tensor(r) for r in cut]


def evaluate(model, tokenizer, reward_model, prompt_ids, settings: BenchSettings, seed: int) -> dict:
    """Mean reward of `eval_samples` sampled replies per prompt: the same code, seed, sampling and compute precision
    (`settings.dtype`, as in training) for both libraries."""
    queries = [torch.tensor(p) for p in prompt_ids for _ in range(settings.eval_samples)]
    batch = collate(queries, [q[:0] for q in queries], tokenizer.pad_token_id)
    generation = GenerationConfig(do_sample=True, max_new_tokens=settings.max_new_tokens,
                                  temperature=settings.temperature, top_k=0, top_p=1.0, min_p=0.0, typical_p=1.0,
                                  repetition_penalty=1.0, no_repeat_ngram_size=0, use_cache=True,
                                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed + EVAL_SEED_OFFSET)
    with torch.no_grad(), precision(settings.dtype, "cpu").autocast():
        output = model.generate(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                generation_config=generation)
    model.train(was_training)
    responses = response_tokens(output[:, batch["input_ids"].shape[1]:], tokenizer.eos_token_id)
    scores = score_responses(reward_model, queries, responses, tokenizer.pad_token_id).tolist()
    digest = hashlib.sha1(b"|".join(bytes(str(r.tolist()), "ascii") for r in responses)).hexdigest()
    return {"mean": statistics.fmean(scores), "scores": scores,
            "mean_length": statistics.fmean(len(r) for r in responses), "tokens_sha1": digest}


def lora_b_norm(model) -> float:
    """Norm of all LoRA B matrices: they start at zero, so this is how far training moved the adapter."""
    return math.sqrt(sum(float(p.detach().pow(2).sum()) for n, p in model.named_parameters() if "lora_B" in n))


def common_record(library: str, settings: BenchSettings, seed: int, tokenizer, reward_model, prompt_ids) -> dict:
    """Fields every worker reports (and the parent compares across libraries)."""
    probe = score_responses(reward_model, [torch.tensor(p) for p in prompt_ids],
                            [torch.tensor(tokenizer("It was great.", add_special_tokens=False)["input_ids"])]
                            * len(prompt_ids), tokenizer.pad_token_id)
    trl = sys.modules.get("trl")
    return {"library": library, "seed": seed, "threads": torch.get_num_threads(), "dtype": settings.dtype,
            "versions": {"torch": torch.__version__, "transformers": importlib.metadata.version("transformers"),
                         "peft": importlib.metadata.version("peft"),
                         "trl": getattr(trl, "__version__", None), "trl_path": getattr(trl, "__file__", None)},
            "reward_probe": [round(x, 5) for x in probe.tolist()],
            "prompt_token_counts": [len(p) for p in prompt_ids]}
