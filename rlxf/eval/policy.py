"""Evaluating policies the same way whichever algorithm trained them: samples, rewards, KL, fluency, statistics.

`policy_report` samples one reply per prompt from an adapter of a PeftModel (or a plain model), scores it with any
`reward_fn(prompts, completions)`, and measures per reply:
  kl          sum over reply tokens of log pi(t) - log pi_ref(t) at the sampling temperature (k1; its mean over
              replies sampled from pi estimates KL(pi || pi_ref) per reply, the quantity PPO's penalty controls)
  ref_nll     mean negative log-likelihood per token under the reference at temperature 1 (exp of its mean over
              replies is the replies' perplexity under the reference: fluency, and a reward-hacking alarm)
  length      reply tokens (up to and including EOS)
The reference is the base with adapters disabled (`ref_adapter=None`) or another adapter (e.g. the SFT one).
The statistics on these measurements live in `rlxf.analysis.stats` (numpy and scipy only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from rlxf.lm.adapters import using_adapter
from rlxf.lm.generation import encode_text, eos_ids, padding_id, sample_tokens
from rlxf.lm.logprobs import token_logprobs, token_logprobs_at
from rlxf.lm.precision import Precision, model_device, precision
from rlxf.progress import progress


@torch.no_grad()
def sample(model, tokenizer, prompts: Sequence[str], *, adapter: str | None, max_new_tokens: int = 32,
           temperature: float = 0.7, seed: int = 0, batch_size: int = 8, dtype: str | Precision = "auto"
           ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
    """One reply per (already formatted) prompt -> (queries, responses, texts).

    Sampled the way PPO samples (rlxf.lm.generation.sample_tokens).
    """
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise ValueError("sample(): prompts must be a non-empty list of strings")
    pad_id, eos = padding_id(tokenizer), eos_ids(model, tokenizer)
    queries = [encode_text(tokenizer, p) for p in prompts]
    was_training = model.training
    model.eval()
    try:
        with using_adapter(model, adapter), torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            responses = sample_tokens(model, queries, max_new_tokens=max_new_tokens, temperature=temperature,
                                      pad_id=pad_id, eos_ids=eos, batch_size=batch_size, dtype=dtype)
    finally:
        model.train(was_training)
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return queries, responses, texts


def policy_report(model, tokenizer, prompts: Sequence[str], reward_fn: Callable[..., Sequence[float]] | None, *,
                  adapter: str | None, ref_adapter: str | None = None, max_new_tokens: int = 32,
                  temperature: float = 0.7, seed: int = 0, batch_size: int = 8, dtype: str | Precision = "auto",
                  **reward_kwargs) -> pd.DataFrame:
    """Sample from `adapter`, score, and measure KL to `ref_adapter` and fluency -> one row per prompt.

    Columns: prompt, reply, reward (NaN without reward_fn), length, kl, ref_nll. `reward_kwargs` go to reward_fn.
    `dtype`: the compute precision of sampling and scoring (rlxf.lm.precision; the same for policy and reference).
    """
    compute = precision(dtype, model_device(model))
    with progress(total=4, desc=f"policy_report {adapter or 'base'}", unit="phase") as bar:
        bar.set_postfix_str("sampling")
        queries, responses, texts = sample(model, tokenizer, prompts, adapter=adapter, max_new_tokens=max_new_tokens,
                                           temperature=temperature, seed=seed, batch_size=batch_size, dtype=compute)
        bar.update(1)
        bar.set_postfix_str("policy log-probs")
        logp = token_logprobs(model, tokenizer, queries, responses, adapter=adapter, temperature=temperature,
                              batch_size=batch_size, dtype=compute)
        bar.update(1)
        bar.set_postfix_str("reference log-probs")
        # One reference forward serves both temperatures (KL at the sampling temperature, fluency at 1).
        ref_logp, ref_logp_t1 = token_logprobs_at(model, tokenizer, queries, responses, adapter=ref_adapter,
                                                  temperatures=(temperature, 1.0), batch_size=batch_size,
                                                  dtype=compute)
        bar.update(1)
        bar.set_postfix_str("reward")
        rewards = (np.asarray(reward_fn(list(prompts), texts, **reward_kwargs), dtype=float)
                   if reward_fn is not None else np.full(len(texts), np.nan))
        bar.update(1)
    return pd.DataFrame({
        "prompt": list(prompts), "reply": texts, "reward": rewards,
        "length": [len(r) for r in responses],
        "kl": [float((a - b).sum()) for a, b in zip(logp, ref_logp, strict=True)],
        "ref_nll": [float(-x.mean()) if len(x) else np.nan for x in ref_logp_t1],
    })


def summarise(report: pd.DataFrame) -> dict:
    """Means of a `policy_report` (and the replies' perplexity under the reference)."""
    return {"reward": float(report.reward.mean()), "kl": float(report.kl.mean()),
            "length": float(report.length.mean()), "ref_perplexity": float(np.exp(report.ref_nll.mean()))}
