"""The one sampling path: chat prompts, token ids, sampling settings, batched generation, EOS ids.

Text level: `generate(model, tokenizer, prompts)` -> one reply string per prompt (greedy or sampled with the model's
own generation config). Token level (what PPO and the evaluation use): `encode_text` -> query ids,
`sampling_config` -> a GenerationConfig that samples from the policy's own distribution, `generate_responses` ->
response ids cut after the first EOS, `collate` -> [left-padded query | right-padded response] batches.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Sequence

import torch

from rlxf.lm import decode
from rlxf.lm.precision import Precision, model_device, precision
from rlxf.progress import progress


def chat_prompt(tokenizer, user_text: str, system: str | None = None) -> str:
    """The text a chat model sees before its reply: the chat template when the tokenizer has one, else plain text.

    `system=None` means no system prompt: some templates (SmolLM2's) inject a default one (~30 tokens that every
    forward pays for) when the first message is not a system message; for those an empty system message renders
    shorter, and the shorter of the two renderings is used. A template that inserts its own text even then forces it.
    """
    if not isinstance(user_text, str):
        raise ValueError(f"user_text must be a str, got {type(user_text).__name__}")
    if getattr(tokenizer, "chat_template", None):
        user = [{"role": "user", "content": user_text}]
        if system:
            return tokenizer.apply_chat_template([{"role": "system", "content": system}, *user], tokenize=False,
                                                 add_generation_prompt=True)
        plain = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        try:
            empty_system = tokenizer.apply_chat_template([{"role": "system", "content": ""}, *user], tokenize=False,
                                                         add_generation_prompt=True)
        except Exception:  # noqa: BLE001  (templates without a system role raise their own errors)
            return plain
        return empty_system if len(empty_system) < len(plain) else plain
    return f"{system}\n\n{user_text}\n" if system else f"{user_text}\n"


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    if isinstance(prompts, str):
        raise ValueError("prompts must be a list of strings, got a single str (wrap it in a list)")
    prompts = list(prompts)
    if not prompts:
        raise ValueError("prompts is empty: expected at least one prompt")
    for index, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ValueError(f"prompts[{index}] must be a str, got {type(prompt).__name__}")
    return prompts


def _generation_config(model, tokenizer, *, max_new_tokens: int, do_sample: bool, temperature: float, top_p: float):
    """The model's own generation config with only the settings asked for here (sampling knobs only when sampling)."""
    config = copy.deepcopy(model.generation_config)
    # Reset the knobs a checkpoint may ship (e.g. temperature=0.2) so greedy decoding is plain greedy, quietly.
    config.temperature, config.top_p, config.top_k = None, None, None
    config.do_sample = do_sample
    if do_sample:
        config.temperature, config.top_p = temperature, top_p
    config.max_new_tokens = max_new_tokens
    config.use_cache = True
    config.max_length = None
    config.pad_token_id = tokenizer.pad_token_id
    eos_ids = config.eos_token_id if config.eos_token_id is not None else []
    eos_ids = [eos_ids] if isinstance(eos_ids, int) else list(eos_ids)
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos_ids:
        eos_ids.append(tokenizer.eos_token_id)
    config.eos_token_id = eos_ids or None
    return config


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
    chat: bool = True,
    dtype: str | Precision = "auto",
) -> list[str]:
    """One reply per prompt: only the new text, special tokens dropped, stripped.

    With `chat=True` each prompt is wrapped by `chat_prompt` first. Sampling draws from a generator seeded with
    `seed` (the global RNG state is restored afterwards), so a call is reproducible for a fixed batch size.
    Prompts are batched in order of length (less padding); `dtype` is the compute precision (`rlxf.lm.precision`).
    Greedy decoding of a Llama-family model on CPU runs through `rlxf.lm.decode` (the same argmax, faster).
    """
    prompts = _check_prompts(prompts)
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if do_sample and not (temperature > 0 and 0 < top_p <= 1):
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to the eos token)")
    texts = [chat_prompt(tokenizer, prompt) for prompt in prompts] if chat else prompts
    config = _generation_config(
        model, tokenizer, max_new_tokens=max_new_tokens, do_sample=do_sample, temperature=temperature, top_p=top_p
    )
    device = model_device(model)
    compute = precision(dtype, device)
    order = by_length([len(text) for text in texts])
    # greedy on CPU through rlxf.lm.decode (the judge's and the raters' replies): the same argmax, a faster loop
    fast = device.type == "cpu" and decode.plain_greedy(config) and decode.supports(model)
    was_training = model.training
    model.eval()
    replies: list[str] = [""] * len(texts)
    try:
        # manual_seed seeds every GPU too, so every GPU's state is saved and restored.
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())), compute.autocast():
            torch.manual_seed(seed)
            for start in progress(range(0, len(texts), batch_size), desc="generate", unit="batch"):
                # Left padding keeps every prompt's last token at the end, where generation continues.
                rows = order[start : start + batch_size]
                batch = tokenizer([texts[i] for i in rows], return_tensors="pt", padding=True,
                                  padding_side="left").to(device)
                if fast:
                    new_tokens = decode.sample(model, batch["input_ids"], batch["attention_mask"],
                                               max_new_tokens=max_new_tokens, temperature=1.0, top_k=0, top_p=1.0,
                                               pad_id=tokenizer.pad_token_id, eos_ids=set(config.eos_token_id or ()),
                                               dtype=compute.dtype, greedy=True)
                else:
                    output = model.generate(**batch, generation_config=config)
                    new_tokens = output[:, batch["input_ids"].shape[1] :]
                for i, text in zip(rows, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True):
                    replies[i] = text.strip()
    finally:
        model.train(was_training)
    return replies


# ------------------------------------------------------------------------------------------------ token level


def keeps_logits(model) -> bool:
    """Whether the model's forward takes `logits_to_keep` (compute the LM head only on the positions scored)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def by_length(lengths: Sequence[int]) -> list[int]:
    """Indices that sort items by length (stable): batches of similar lengths waste less compute on padding."""
    return sorted(range(len(lengths)), key=lambda i: lengths[i])


def padding_id(tokenizer) -> int | None:
    """The padding id: the pad token, else the eos token (many causal LMs ship without a pad token)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id


def eos_ids(model, tokenizer) -> set[int]:
    """EOS token ids from the tokenizer and the model's generation config (chat models often have several)."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    generation_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if generation_eos is not None:
        ids |= set(generation_eos) if isinstance(generation_eos, (list, tuple)) else {generation_eos}
    return ids


def encode_text(tokenizer, text: str, *, special_tokens: bool = True) -> torch.Tensor:
    """Token ids of `text` as a 1-D LongTensor; no second BOS when the text (a chat template's output) has one."""
    bos = getattr(tokenizer, "bos_token", None)
    special_tokens = special_tokens and not (bos and text.startswith(bos))
    return torch.tensor(tokenizer(text, add_special_tokens=special_tokens)["input_ids"], dtype=torch.long)


def token_ids(tokenizer, item, what: str, index: int, *, special_tokens: bool) -> torch.Tensor:
    """A string or a sequence of token ids as a non-empty 1-D LongTensor; an error names `what[index]`."""
    if isinstance(item, str):
        ids = encode_text(tokenizer, item, special_tokens=special_tokens)
    else:
        raw = torch.as_tensor(item).detach().cpu()
        if raw.is_floating_point() or raw.is_complex() or raw.dtype == torch.bool:
            raise ValueError(f"{what}[{index}] must hold integer token ids, got {raw.dtype} values")
        ids = raw.long()
        vocab = len(tokenizer)
        outside = ids[(ids < 0) | (ids >= vocab)]
        if outside.numel():
            raise ValueError(f"{what}[{index}] has the token id {int(outside.flatten()[0])} outside the tokenizer's "
                             f"vocabulary (0 to {vocab - 1})")
    if ids.ndim != 1 or len(ids) == 0:
        raise ValueError(f"{what}[{index}] must be a non-empty string or 1-D token-id sequence, "
                         f"got shape {tuple(ids.shape)}")
    return ids


def collate(queries: Sequence[torch.Tensor], responses: Sequence[torch.Tensor], pad_id: int) -> dict:
    """One tensor batch [left-padded query | right-padded response] with masks and position ids."""
    q_len, r_len = max(len(q) for q in queries), max(len(r) for r in responses)
    input_ids = torch.full((len(queries), q_len + r_len), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (query, response) in enumerate(zip(queries, responses, strict=True)):
        input_ids[i, q_len - len(query):q_len] = query
        input_ids[i, q_len:q_len + len(response)] = response
        attention_mask[i, q_len - len(query):q_len + len(response)] = 1
    position_ids = (attention_mask.cumsum(1) - 1).clamp(min=0)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "position_ids": position_ids,
            "response_mask": attention_mask[:, q_len:].float()}


def truncate_after_eos(tokens: torch.Tensor, eos_ids: set[int]) -> torch.Tensor:
    """The tokens up to and including the first EOS (all of them if there is none)."""
    is_eos = torch.tensor([int(t) in eos_ids for t in tokens], dtype=torch.bool)
    return tokens[: int(is_eos.nonzero()[0]) + 1] if is_eos.any() else tokens


def sampling_config(*, max_new_tokens: int, temperature: float, top_k: int, top_p: float, pad_id: int,
                    eos_ids: set[int]):
    """A GenerationConfig that samples from the policy's own (temperature-scaled) distribution.

    Unset fields are filled from the model's generation_config (e.g. a repetition penalty) and then from global
    defaults (top_k=50): every logit processor is set explicitly so that sampling follows the policy.
    """
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=True, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, min_p=0.0, typical_p=1.0, repetition_penalty=1.0, no_repeat_ngram_size=0,
                            use_cache=True, pad_token_id=pad_id, eos_token_id=sorted(eos_ids))


@torch.no_grad()
def generate_responses(model, queries: Sequence[torch.Tensor], generation, pad_id: int, eos_ids: set[int]
                       ) -> list[torch.Tensor]:
    """One sampled response per query (one left-padded batch, KV cache), each cut after its first EOS."""
    batch = collate(queries, [q[:0] for q in queries], pad_id)
    device = model_device(model)
    output = model.generate(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                            generation_config=generation)
    generated = output[:, batch["input_ids"].shape[1]:].cpu()
    return [truncate_after_eos(row, eos_ids) for row in generated]


@torch.no_grad()
def sample_tokens(model, queries: Sequence[torch.Tensor], *, max_new_tokens: int, temperature: float, top_k: int = 0,
                  top_p: float = 1.0, pad_id: int, eos_ids: set[int], batch_size: int | None = None,
                  dtype: str | Precision = "auto") -> list[torch.Tensor]:
    """One response per query sampled from the model's own distribution (`sampling_config`), `batch_size` queries
    at a time (None: all at once; batches grouped by query length), each cut after its first EOS.

    `dtype`: the compute precision (`rlxf.lm.precision.precision`), the same as the forwards that score the responses.
    On CPU a Llama-family model (plain or LoRA) samples through `rlxf.lm.decode` (same distribution, several times
    faster); other models through transformers' `generate`.
    """
    config = sampling_config(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                             pad_id=pad_id, eos_ids=eos_ids)
    compute = precision(dtype, model_device(model))
    size = batch_size or len(queries)
    order = by_length([len(q) for q in queries]) if size < len(queries) else list(range(len(queries)))
    responses: list[torch.Tensor | None] = [None] * len(queries)
    fast = compute.device_type == "cpu" and decode.supports(model)
    with compute.autocast():
        for start in range(0, len(queries), size):
            rows = order[start:start + size]
            batch = [queries[i] for i in rows]
            sampled = (_sample_fast(model, batch, config, pad_id, eos_ids, compute.dtype) if fast
                       else generate_responses(model, batch, config, pad_id, eos_ids))
            for i, response in zip(rows, sampled, strict=True):
                responses[i] = response
    return responses


def _sample_fast(model, queries: Sequence[torch.Tensor], config, pad_id: int, eos_ids: set[int], dtype: torch.dtype
                 ) -> list[torch.Tensor]:
    """`generate_responses` through `rlxf.lm.decode.sample` (merged weights, static cache, inverse-CDF sampling)."""
    batch = collate(queries, [q[:0] for q in queries], pad_id)
    generated = decode.sample(model, batch["input_ids"], batch["attention_mask"], max_new_tokens=config.max_new_tokens,
                              temperature=config.temperature, top_k=config.top_k or 0, top_p=config.top_p,
                              pad_id=pad_id, eos_ids=eos_ids, dtype=dtype)
    return [truncate_after_eos(row, eos_ids) for row in generated]
