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
from rlxf.lm.generation import by_length, collate, encode_text, eos_ids, keeps_logits, padding_id, sample_tokens
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


def token_logprobs(model, tokenizer, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], *,
                   adapter: str | None, temperature: float = 1.0, batch_size: int = 8, dtype: str | Precision = "auto"
                   ) -> list[np.ndarray]:
    """Log-probabilities of each response token given its query, under `adapter` at `temperature`."""
    return token_logprobs_at(model, tokenizer, queries, responses, adapter=adapter, temperatures=(temperature,),
                             batch_size=batch_size, dtype=dtype)[0]


@torch.no_grad()
def token_logprobs_at(model, tokenizer, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], *,
                      adapter: str | None, temperatures: Sequence[float], batch_size: int = 8,
                      dtype: str | Precision = "auto") -> list[list[np.ndarray]]:
    """`token_logprobs` at several temperatures from one forward per batch -> one list per temperature.

    Batches group pairs of similar length (less padding); only the response positions' logits are computed; the
    forward runs in the compute precision `dtype` (rlxf.lm.precision), log-probabilities are taken in fp32.
    """
    if len(queries) != len(responses):
        raise ValueError(f"token_logprobs(): {len(queries)} queries but {len(responses)} responses")
    pad_id = padding_id(tokenizer)
    device = model_device(model)
    compute = precision(dtype, device)
    extra = keeps_logits(model)
    out: list[list[np.ndarray | None]] = [[None] * len(queries) for _ in temperatures]
    order = by_length([len(q) + len(r) for q, r in zip(queries, responses, strict=True)])
    was_training = model.training
    model.eval()
    try:
        with using_adapter(model, adapter):
            for start in range(0, len(queries), batch_size):
                rows = order[start:start + batch_size]
                q, r = [queries[i] for i in rows], [responses[i] for i in rows]
                nonempty = [len(x) > 0 for x in r]
                r = [x if len(x) else torch.tensor([pad_id]) for x in r]  # an empty reply scores nothing
                batch = collate(q, r, pad_id)
                r_len = batch["response_mask"].shape[1]
                with compute.autocast():
                    logits = model(input_ids=batch["input_ids"].to(device),
                                   attention_mask=batch["attention_mask"].to(device),
                                   position_ids=batch["position_ids"].to(device), use_cache=False,
                                   **({"logits_to_keep": r_len + 1} if extra else {})).logits
                logits = logits[:, -(r_len + 1):-1].float()
                targets = batch["input_ids"][:, -r_len:].to(device)
                for k, temperature in enumerate(temperatures):
                    logp = torch.log_softmax(logits / temperature, -1).gather(-1, targets[..., None]).squeeze(-1).cpu()
                    for i, row, mask, keep in zip(rows, logp, batch["response_mask"], nonempty, strict=True):
                        out[k][i] = row[mask.bool()].numpy() if keep else np.zeros(0, dtype=np.float32)
    finally:
        model.train(was_training)
    return out


def policy_report(model, tokenizer, prompts: Sequence[str], reward_fn: Callable[..., Sequence[float]] | None, *,
                  adapter: str | None, ref_adapter: str | None = None, max_new_tokens: int = 32,
                  temperature: float = 0.7, seed: int = 0, batch_size: int = 8, dtype: str | Precision = "auto",
                  **reward_kwargs) -> pd.DataFrame:
    """Sample from `adapter`, score, and measure KL to `ref_adapter` and fluency -> one row per prompt.

    Columns: prompt, reply, reward (NaN without reward_fn), length, kl, ref_nll. `reward_kwargs` go to reward_fn.
    `dtype`: the compute precision of sampling and scoring (rlxf.device; the same for policy and reference).
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
