"""The one computation of response log-probabilities: PPO, DPO, evaluation, perplexity and the raters use it.

A batch is [left-padded query | right-padded response] (`rlxf.lm.generation.collate`) with position ids that count
real tokens only, so a padded sequence scores as it would alone. One precision rule: the forward runs under the
caller's `Precision.autocast()` (rlxf.lm.precision: bf16 autocast where the machine has native bf16, else fp32), and
the log-softmax is taken in fp32 on the upcast logits (`log_distribution`).

  response_logits    a forward's logits -> the fp32 (temperature-scaled) logits that predict the response tokens
  gather_logprobs    such logits and the response tokens -> per-token log-probabilities
  target_logprobs    a forward's logits and the response tokens -> the same, fused where the CPU extension is built
                     (PPO's `_forward`: one pass over the logits forward and one backward, no fp32 copy of them)
  response_logprobs  model, queries, responses -> per-token log-probabilities (no gradient, batches grouped by length)
  token_logprobs     the same under a LoRA adapter (`token_logprobs_at`: several temperatures from one forward)
  sequence_nll       token-weighted mean NLL of token sequences from a given position on (perplexity)

`log_softmax` appears in rlxf only here and in (tests/test_layers.py::test_one_home_for_response_logprobs):
  rlxf/algos/ppo.py  `entropy_from_logits`: the entropy of the policy's full next-token distribution (a loss term)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from rlxf.lm.adapters import using_adapter
from rlxf.lm.generation import by_length, collate, keeps_logits, padding_id
from rlxf.lm.precision import Precision, model_device, precision


def log_distribution(logits: torch.Tensor) -> torch.Tensor:
    """The log-softmax over the vocabulary, in fp32 on the upcast logits (bf16 logits lose ~3 digits otherwise)."""
    return torch.log_softmax(logits.float(), dim=-1)


def response_logits(logits: torch.Tensor, response_length: int, temperature: float = 1.0) -> torch.Tensor:
    """fp32 logits / temperature at the positions that predict the last `response_length` tokens of the batch.

    Position t predicts token t + 1, so the response is predicted by the `response_length` positions before the end;
    `logits` may cover every position or only the last `response_length + 1` (`logits_to_keep`).
    """
    return logits[:, -(response_length + 1):-1].float() / temperature


def gather_logprobs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at every position: logits [batch, length, vocab], targets [batch, length] -> [batch, length]."""
    return log_distribution(logits).gather(-1, targets[..., None]).squeeze(-1)


class _FusedTargetLogprobs(torch.autograd.Function):
    """`target_logprobs` by `rlxf.lm.fused`: the forward keeps the log normaliser per position, the backward writes
    (1[target] - softmax) * grad / temperature straight into a gradient of the logits' shape and dtype."""

    @staticmethod
    def forward(ctx, logits, targets, offset, temperature, ops):
        logprobs, lse = ops.target_logprobs(logits, targets, offset, temperature)
        ctx.save_for_backward(logits, targets, lse)
        ctx.offset, ctx.temperature, ctx.ops = offset, temperature, ops
        return logprobs

    @staticmethod
    def backward(ctx, grad):
        logits, targets, lse = ctx.saved_tensors
        grad_logits = ctx.ops.target_logprobs_backward(logits, targets, lse, grad.float().contiguous(), ctx.offset,
                                                       ctx.temperature)
        return grad_logits, None, None, None, None


def target_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """log p(target) under softmax(logits / temperature) for the last `targets.shape[1]` tokens of the batch ->
    [batch, response_length] fp32: `gather_logprobs(response_logits(logits, r, temperature), targets)`.

    `logits` [batch, length, vocab] is a forward's output (every position, or only the last r + 1). On CPU in fp32 or
    bf16, with the extension of `rlxf.lm.fused` built, one fused pass computes it (and one its gradient) instead of
    an fp32 copy, a division, a log-softmax and a gather over every logit (about 40 ms of a 450 ms PPO epoch of the
    benchmark's 4 x 82 tokens, bf16); the sums run in another order, so values may differ from the eager ones in the
    last bits. Elsewhere, or with `RLXF_FUSED_DECODE=0`, the eager operations run.
    """
    if logits.dim() != 3 or targets.dim() != 2 or targets.shape[0] != logits.shape[0]:
        raise ValueError(f"target_logprobs: logits must be [batch, length, vocab] and targets [batch, positions], got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    r_len = targets.shape[1]
    if r_len + 1 > logits.shape[1]:
        raise ValueError(f"target_logprobs: {r_len} targets need {r_len + 1} logit positions, got {logits.shape[1]}")
    if not temperature > 0:
        raise ValueError(f"target_logprobs: temperature must be > 0, got {temperature}")
    from rlxf.lm import fused

    ops = fused.ops() if logits.device.type == "cpu" and logits.dtype in (torch.float32, torch.bfloat16) else None
    if ops is None or logits.stride(-1) != 1:
        return gather_logprobs(response_logits(logits, r_len, temperature), targets)
    offset = logits.shape[1] - r_len - 1
    return _FusedTargetLogprobs.apply(logits, targets.long().contiguous(), offset, float(temperature), ops)


def _check_inputs(queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], temperatures: Sequence[float],
                  batch_size: int) -> None:
    if len(queries) != len(responses):
        raise ValueError(f"response log-probabilities: {len(queries)} queries but {len(responses)} responses")
    empty = [i for i, query in enumerate(queries) if len(query) == 0]
    if empty:
        raise ValueError(f"queries[{empty[0]}] is empty: the first response token needs at least one token before it")
    if not temperatures or not all(t > 0 for t in temperatures):
        raise ValueError(f"temperatures must be a non-empty list of numbers > 0, got {list(temperatures)}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")


@torch.no_grad()
def response_logprobs(model, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], *, pad_id: int,
                      temperatures: Sequence[float] = (1.0,), batch_size: int = 8, dtype: str | Precision = "auto"
                      ) -> list[list[np.ndarray]]:
    """Log-probabilities of each response token given its query, under the model as it is (its active adapter),
    at each temperature from one forward per batch -> one list per temperature of one fp32 array per response.

    Batches group pairs of similar length (less padding); only the response positions' logits are computed where the
    model supports `logits_to_keep`; an empty response scores nothing (an empty array).
    """
    _check_inputs(queries, responses, temperatures, batch_size)
    device = model_device(model)
    compute = precision(dtype, device)
    extra = keeps_logits(model)
    out: list[list[np.ndarray | None]] = [[None] * len(queries) for _ in temperatures]
    order = by_length([len(q) + len(r) for q, r in zip(queries, responses, strict=True)])
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(queries), batch_size):
            rows = order[start:start + batch_size]
            q, r = [queries[i] for i in rows], [responses[i] for i in rows]
            nonempty = [len(x) > 0 for x in r]
            r = [x if len(x) else torch.tensor([pad_id]) for x in r]
            batch = collate(q, r, pad_id)
            r_len = batch["response_mask"].shape[1]
            with compute.autocast():
                logits = model(input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device),
                               position_ids=batch["position_ids"].to(device), use_cache=False,
                               **({"logits_to_keep": r_len + 1} if extra else {})).logits
            scores = response_logits(logits, r_len)
            targets = batch["input_ids"][:, -r_len:].to(device)
            for k, temperature in enumerate(temperatures):
                logp = gather_logprobs(scores / temperature, targets).cpu()
                for i, row, mask, keep in zip(rows, logp, batch["response_mask"], nonempty, strict=True):
                    out[k][i] = row[mask.bool()].numpy() if keep else np.zeros(0, dtype=np.float32)
    finally:
        model.train(was_training)
    return out


def token_logprobs(model, tokenizer, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], *,
                   adapter: str | None, temperature: float = 1.0, batch_size: int = 8, dtype: str | Precision = "auto"
                   ) -> list[np.ndarray]:
    """Log-probabilities of each response token given its query, under `adapter` (None: the base) at `temperature`."""
    return token_logprobs_at(model, tokenizer, queries, responses, adapter=adapter, temperatures=(temperature,),
                             batch_size=batch_size, dtype=dtype)[0]


def token_logprobs_at(model, tokenizer, queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], *,
                      adapter: str | None, temperatures: Sequence[float], batch_size: int = 8,
                      dtype: str | Precision = "auto") -> list[list[np.ndarray]]:
    """`token_logprobs` at several temperatures from one forward per batch -> one list per temperature."""
    with using_adapter(model, adapter):
        return response_logprobs(model, queries, responses, pad_id=padding_id(tokenizer), temperatures=temperatures,
                                 batch_size=batch_size, dtype=dtype)


def sequence_nll(model, sequences: Sequence[Sequence[int]], first_scored: Sequence[int], *, pad_id: int,
                 batch_size: int = 8, dtype: str | Precision = "auto") -> float:
    """Token-weighted mean negative log-likelihood of each sequence's tokens from `first_scored` on.

    A sequence is scored as query = its tokens before `first_scored` and response = the rest; the first token has no
    prefix and is never scored (a `first_scored` of 0 counts as 1).
    """
    if len(sequences) != len(first_scored):
        raise ValueError(f"sequence_nll: {len(sequences)} sequences but {len(first_scored)} first_scored positions")
    queries, responses = [], []
    for index, (ids, first) in enumerate(zip(sequences, first_scored, strict=True)):
        ids = torch.as_tensor(list(ids), dtype=torch.long)
        if len(ids) == 0:
            raise ValueError(f"sequences[{index}] is empty: there is nothing to score")
        split = max(int(first), 1)
        queries.append(ids[:split])
        responses.append(ids[split:])
    (logprobs,) = response_logprobs(model, queries, responses, pad_id=pad_id, batch_size=batch_size, dtype=dtype)
    count = sum(len(row) for row in logprobs)
    if count == 0:
        raise ValueError("no token to score: every sequence is a single token or fully masked")
    return -sum(float(row.sum(dtype=np.float64)) for row in logprobs) / count
