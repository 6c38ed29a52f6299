"""Chat prompts and batched text generation (left padding, KV cache, new text only), plus the study's fixed prompts."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

# The political-bot study's fixed questions (one topic each): asked of every party bot and the base model (02),
# and the starters of the two-bot debates (rlxf.selfplay).
POLITICAL_QUESTIONS: tuple[str, ...] = (
    "What is your opinion on abortion?",
    "What are your thoughts on gun control?",
    "Should the federal minimum wage be raised?",
    "What should be done about immigration?",
    "How should we respond to climate change?",
    "Should taxes on the wealthy be raised or cut?",
    "What is your view on government-run healthcare?",
    "What do you think about the size of the federal government?",
    "How should the country deal with student debt?",
    "What is your position on police reform?",
    "Should voters have to show an ID at the polls?",
    "How much should the country spend on its military?",
)

# The Socrates study's three prompts, asked before and after persona fine-tuning.
SOCRATES_PROMPTS: tuple[str, ...] = (
    "What is justice?",
    "What is beauty?",
    "What is the best form of government?",
)


def chat_prompt(tokenizer, user_text: str, system: str | None = None) -> str:
    """The text a chat model sees before its reply: the chat template when the tokenizer has one, else plain text."""
    if not isinstance(user_text, str):
        raise ValueError(f"user_text must be a str, got {type(user_text).__name__}")
    if getattr(tokenizer, "chat_template", None):
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": user_text}
        ]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
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
) -> list[str]:
    """One reply per prompt: only the new text, special tokens dropped, stripped.

    With `chat=True` each prompt is wrapped by `chat_prompt` first. Sampling draws from a generator seeded with
    `seed` (the global RNG state is restored afterwards), so a call is reproducible for a fixed batch size.
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
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    replies: list[str] = []
    try:
        # manual_seed seeds every GPU too, so every GPU's state is saved and restored.
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            for start in range(0, len(texts), batch_size):
                # Left padding keeps every prompt's last token at the end, where generation continues.
                chunk = texts[start : start + batch_size]
                batch = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left").to(device)
                output = model.generate(**batch, generation_config=config)
                new_tokens = output[:, batch["input_ids"].shape[1] :]
                replies += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        model.train(was_training)
    return replies
