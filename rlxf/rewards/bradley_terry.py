"""Bradley-Terry preference (reward) models on chosen/rejected pairs with TRL's RewardTrainer, and their ensembles.

A pair is a mapping with `chosen`, `rejected` and optionally `prompt`; the model reads `prompt + chosen` and
`prompt + rejected` (HH-RLHF's "\\n\\nHuman: ... \\n\\nAssistant: ..." text as it is). We tokenise the pairs ourselves
(`encode_texts`) and hand TRL `chosen_ids`/`rejected_ids`, because TRL appends the tokenizer's EOS *as text* to
non-conversational data and the MiniLM encoder has no EOS token. The rule is TRL's otherwise: the EOS id is
appended when the tokenizer has one; texts longer than `max_length` keep their end (the replies being compared).
Scoring (`score_texts`, `pairwise_accuracy`, `RewardEnsemble`) uses the very same encoding.

The model (Bradley & Terry 1952): P(chosen preferred to rejected) = sigmoid(r(chosen) - r(rejected)), fitted by
minimising its negative log-likelihood (`bradley_terry_loss`, the loss TRL's RewardTrainer computes).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from datasets import Dataset
from trl import RewardConfig, RewardTrainer

from rlxf.infra.threads import thread_budget_callback
from rlxf.infra.tracking import check_report_to
from rlxf.lm.precision import (
    Precision,
    check_dtype,
    fp32_head,
    precision,
    trainer_precision_kwargs,
    training_precision,
    without_autocast_wrapper,
)
from rlxf.rewards.base import RewardFunction, check_batch, check_texts


@dataclass
class PreferenceSettings:
    """How to train a Bradley-Terry reward model with `train_reward_model`."""

    epochs: float = 1.0
    """passes over the training pairs"""
    max_steps: int = -1
    """stop after this many optimizer steps (-1: run all epochs)"""
    learning_rate: float = 5e-5
    """AdamW learning rate (linear decay to 0)"""
    batch_size: int = 8
    """pairs per device per step (the model sees 2 x batch_size texts)"""
    gradient_accumulation_steps: int = 1
    """micro-batches summed per optimizer step"""
    max_length: int = 256
    """tokens per text (prompt + reply); longer texts keep their last tokens"""
    center_rewards_coefficient: float | None = None
    """weight of the mean-squared-reward penalty that keeps rewards centred at 0 (None: off)"""
    logging_steps: int = 10
    """record loss and pairwise training accuracy every this many steps"""
    seed: int = 0
    """seed for shuffling and dropout"""
    dtype: str = "auto"
    """compute precision: "auto" (bf16 mixed precision where the hardware has native bf16, else fp32;
    rlxf.lm.precision), "fp32" or "bf16"; master weights and optimizer states stay fp32"""
    report_to: str = "none"
    """where the trainer also logs: "none", "tensorboard", "trackio" or "wandb" (transformers' `report_to`)"""
    output_dir: str | None = None
    """TRL's scratch directory (no checkpoints are written); None: a temporary directory"""

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_accumulation_steps", "max_length", "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"PreferenceSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_length < 3:
            raise ValueError(f"PreferenceSettings.max_length must be >= 3, got {self.max_length}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"PreferenceSettings.max_steps must be -1 (use epochs) or >= 1, got {self.max_steps}")
        if not self.epochs > 0 or not self.learning_rate > 0:
            raise ValueError("PreferenceSettings.epochs and .learning_rate must be > 0")
        check_dtype(self.dtype, "PreferenceSettings.dtype")
        check_report_to(self.report_to, "PreferenceSettings.report_to")


@dataclass
class PreferenceResult:
    """What `train_reward_model` returns."""

    model: torch.nn.Module
    tokenizer: object
    history: list[dict]
    """one dict per logged step: step, epoch, loss, accuracy (chosen scored above rejected), margin"""
    seconds: float
    n_pairs: int
    settings: PreferenceSettings = field(repr=False)


def bradley_terry_loss(chosen_rewards, rejected_rewards, labels=None) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood per pair: -log sigmoid(r_chosen - r_rejected).

    `labels` (optional, each in [0, 1]): soft labels y = P(chosen preferred), giving the cross-entropy
    -[y log sigmoid(d) + (1 - y) log sigmoid(-d)] with d = r_chosen - r_rejected (y = 1: the plain loss).
    """
    diff = torch.as_tensor(chosen_rewards) - torch.as_tensor(rejected_rewards)
    if labels is None:
        return -F.logsigmoid(diff)
    labels = torch.as_tensor(labels, dtype=diff.dtype, device=diff.device)
    if labels.shape != diff.shape:
        raise ValueError(f"bradley_terry_loss: one label per pair expected, got {tuple(labels.shape)} labels for "
                         f"{tuple(diff.shape)} pairs")
    return -(labels * F.logsigmoid(diff) + (1 - labels) * F.logsigmoid(-diff))


def check_pairs(pairs) -> list[dict]:
    """Pairs as a list of dicts with str `prompt` ('' when absent), `chosen`, `rejected`; a DataFrame is accepted."""
    if hasattr(pairs, "to_dict") and hasattr(pairs, "columns"):
        pairs = pairs.to_dict("records")
    if isinstance(pairs, (str, Mapping)) or not isinstance(pairs, Sequence):
        raise TypeError(f"pairs must be a list of {{prompt, chosen, rejected}} mappings, got {type(pairs).__name__}")
    out = []
    for index, pair in enumerate(pairs):
        if not isinstance(pair, Mapping):
            raise TypeError(f"pairs[{index}] must be a mapping with chosen/rejected, got {type(pair).__name__}")
        row = {"prompt": pair.get("prompt", "") or ""}
        for key in ("chosen", "rejected"):
            if key not in pair:
                raise ValueError(f"pairs[{index}] has no {key!r} (keys: {sorted(pair)})")
            row[key] = pair[key]
        for key, value in row.items():
            if not isinstance(value, str):
                raise TypeError(f"pairs[{index}][{key!r}] must be a str, got {type(value).__name__}")
        out.append({**pair, **row})
    return out


def clean_pairs(pairs, *, what: str = "pairs", verbose: bool = True) -> tuple[list[dict], dict]:
    """Checked pairs without those whose chosen or rejected text is empty (blank) or whose two texts are identical.

    Returns (kept pairs, counts {"kept", "empty", "identical"}); says how many were dropped and why (`what` names
    the set) unless `verbose=False`. Such a pair carries no preference: a reward model or DPO would learn nothing from
    it but noise (identical texts) or an artefact of length (an empty reply).
    """
    kept, empty, identical = [], 0, 0
    for pair in check_pairs(pairs):
        if not pair["chosen"].strip() or not pair["rejected"].strip():
            empty += 1
        elif pair["chosen"].strip() == pair["rejected"].strip():
            identical += 1
        else:
            kept.append(pair)
    counts = {"kept": len(kept), "empty": empty, "identical": identical}
    if verbose and (empty or identical):
        print(f"{what}: dropped {empty + identical} of {len(kept) + empty + identical} pairs "
              f"({empty} with an empty chosen or rejected text, {identical} with identical texts)")
    return kept, counts


def encode_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids as the reward model is trained and scored: special tokens, the EOS id if any, the last max_length."""
    texts = check_texts(texts, "texts")
    eos = tokenizer.eos_token_id
    side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"  # keep the end, where the replies being compared are
    try:
        # One place kept free for the EOS id; special tokens such as [CLS] ... [SEP] are added after truncation.
        batch = tokenizer(texts, truncation=True, max_length=max_length - (eos is not None))["input_ids"]
    finally:
        tokenizer.truncation_side = side
    encoded = []
    for index, ids in enumerate(batch):
        if eos is not None and (not ids or ids[-1] != eos):
            ids = ids + [eos]
        if not ids:
            raise ValueError(f"texts[{index}] encodes to no tokens (empty text and a tokenizer without special tokens)")
        encoded.append(ids)
    return encoded


def pair_dataset(tokenizer, pairs: list[dict], max_length: int, **columns) -> Dataset:
    """TRL's pre-tokenised preference dataset (`chosen_ids`, `rejected_ids`) of checked pairs, plus `columns`."""
    return Dataset.from_dict({
        "chosen_ids": encode_texts(tokenizer, [p["prompt"] + p["chosen"] for p in pairs], max_length),
        "rejected_ids": encode_texts(tokenizer, [p["prompt"] + p["rejected"] for p in pairs], max_length),
        **columns,
    })


def reward_config(settings: PreferenceSettings, scratch: str) -> RewardConfig:
    """TRL's RewardConfig for `settings`: precision from rlxf.lm.precision, no checkpointing, nothing saved."""
    return RewardConfig(
        output_dir=settings.output_dir or scratch,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        per_device_train_batch_size=settings.batch_size,
        gradient_accumulation_steps=settings.gradient_accumulation_steps,
        max_length=settings.max_length,
        center_rewards_coefficient=settings.center_rewards_coefficient,
        logging_steps=settings.logging_steps,
        logging_first_step=True,
        **trainer_precision_kwargs(training_precision(settings.dtype)),  # the Trainer moves to a GPU if any
        # TRL's default is True (transformers' new name: activation_checkpointing); it only costs time here.
        activation_checkpointing=False,
        gradient_checkpointing=False,
        save_strategy="no",
        report_to=settings.report_to,
        seed=settings.seed,
        dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),
    )


def check_reward_model(model, tokenizer) -> None:
    """A reward model has one output (num_labels=1) and its tokenizer a pad token; an error saying which is missing."""
    if int(model.config.num_labels) != 1:
        raise ValueError(
            f"a reward model needs num_labels=1 (one scalar per text); this model has {model.config.num_labels}"
        )
    if tokenizer.pad_token is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token before training")


def train_reward_model(model, tokenizer, pairs, settings: PreferenceSettings) -> PreferenceResult:
    """Train `model` (a sequence classifier with num_labels=1) on pairs with TRL's Bradley-Terry RewardTrainer."""
    pairs = check_pairs(pairs)
    if not pairs:
        raise ValueError("pairs is empty: expected at least one preference pair")
    check_reward_model(model, tokenizer)
    dataset = pair_dataset(tokenizer, pairs, settings.max_length)
    with tempfile.TemporaryDirectory(prefix="rlxf-reward-") as scratch:
        trainer = RewardTrainer(model=model, args=reward_config(settings, scratch), train_dataset=dataset,
                                processing_class=tokenizer, callbacks=[thread_budget_callback()])
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return PreferenceResult(trained_model(trainer), tokenizer, log_rows(trainer), seconds, len(pairs), settings)


def log_rows(trainer) -> list[dict]:
    """A RewardTrainer's logged training rows: step, epoch, loss, accuracy, margin."""
    return [
        {key: row[key] for key in ("step", "epoch", "loss", "accuracy", "margin") if key in row}
        for row in trainer.state.log_history
        if "loss" in row
    ]


def trained_model(trainer) -> torch.nn.Module:
    """The trainer's model without accelerate's autocast wrapper, in eval mode."""
    trained = without_autocast_wrapper(trainer.model)
    trained.eval()
    return trained


def pad_batch(encoded: Sequence[Sequence[int]], rows: Sequence[int], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows `rows` of `encoded` right-padded (as TRL's preference collator pads) -> (input_ids, attention_mask)."""
    width = max(len(encoded[i]) for i in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, i in enumerate(rows):
        input_ids[j, : len(encoded[i])] = torch.tensor(encoded[i])
        attention_mask[j, : len(encoded[i])] = 1
    return input_ids, attention_mask


@torch.no_grad()
def text_outputs(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 256,
                 dtype: str | Precision = "auto") -> np.ndarray:
    """Every output of a sequence classifier per text, shape (n, num_labels), encoded as in training, under the
    compute precision `dtype` (rlxf.lm.precision); order kept."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    encoded = encode_texts(tokenizer, texts, max_length)
    width = int(model.config.num_labels)
    if not encoded:
        return np.zeros((0, width), dtype=np.float32)
    pad_id = tokenizer.pad_token_id
    if pad_id is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token to score texts in batches")
    device = next(model.parameters()).device
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    outputs = np.zeros((len(encoded), width), dtype=np.float32)
    compute = precision(dtype, device)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(encoded), batch_size):
            rows = order[start : start + batch_size]
            # The score is read at the last real token of a right-padded row, as in training.
            input_ids, attention_mask = pad_batch(encoded, rows, pad_id)
            with compute.autocast(), fp32_head(model, compute):
                logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device)).logits
            outputs[rows] = logits.float().cpu().numpy()
    finally:
        model.train(was_training)
    return outputs


def score_texts(model, tokenizer, texts: Sequence[str], batch_size: int = 16, max_length: int = 256,
                dtype: str | Precision = "auto") -> np.ndarray:
    """The reward model's scalar per text (encoded as in training), batched without gradients; order kept."""
    return text_outputs(model, tokenizer, texts, batch_size, max_length, dtype)[:, 0]


def pairwise_accuracy(model, tokenizer, pairs, *, batch_size: int = 16, max_length: int = 256,
                      dtype: str | Precision = "auto") -> float:
    """Share of pairs whose chosen text scores above the rejected one (a tie counts half)."""
    chosen, rejected = score_pairs(model, tokenizer, pairs, batch_size=batch_size, max_length=max_length, dtype=dtype)
    return float(np.mean((chosen > rejected) + 0.5 * (chosen == rejected)))


def score_pairs(model, tokenizer, pairs, *, batch_size: int = 16, max_length: int = 256,
                dtype: str | Precision = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The reward model's scores of prompt + chosen and prompt + rejected, one each per pair."""
    pairs = check_pairs(pairs)
    if not pairs:
        raise ValueError("pairs is empty: expected at least one preference pair")
    chosen = score_texts(model, tokenizer, [p["prompt"] + p["chosen"] for p in pairs], batch_size, max_length, dtype)
    rejected = score_texts(model, tokenizer, [p["prompt"] + p["rejected"] for p in pairs], batch_size, max_length,
                           dtype)
    return chosen, rejected


def flip_labels(pairs, fraction: float, seed: int) -> list[dict]:
    """Swap chosen and rejected in exactly round(fraction * n) seeded-random pairs (a noisy labeller).

    Returns new dicts (the input is not modified), each with `flipped` True/False.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    pairs = check_pairs(pairs)
    n_flip = int(round(fraction * len(pairs)))
    flipped = set(np.random.default_rng(seed).permutation(len(pairs))[:n_flip].tolist())
    out = []
    for index, pair in enumerate(pairs):
        row = dict(pair)
        if index in flipped:
            row["chosen"], row["rejected"] = pair["rejected"], pair["chosen"]
        row["flipped"] = index in flipped
        out.append(row)
    return out


class RewardEnsemble(RewardFunction):
    """K reward models: the reward is their mean score of prompt + completion, the uncertainty their spread.

    `members` is a list of (model, tokenizer). `__call__` returns the mean (the reward signature);
    `score_with_uncertainty` returns (mean, std) with the population std over the K members (0 for K = 1).
    """

    def __init__(
        self,
        members: Sequence[tuple],
        *,
        batch_size: int = 16,
        max_length: int = 256,
        name: str = "preference_ensemble",
        dtype: str | Precision = "auto",
    ):
        members = list(members)
        if not members:
            raise ValueError("RewardEnsemble needs at least one (model, tokenizer) member")
        for index, member in enumerate(members):
            if not (isinstance(member, (tuple, list)) and len(member) == 2):
                raise TypeError(f"members[{index}] must be a (model, tokenizer) pair, got {type(member).__name__}")
            if int(member[0].config.num_labels) != 1:
                raise ValueError(f"members[{index}] has num_labels={member[0].config.num_labels}; reward models have 1")
            member[0].eval()
        self.members, self.batch_size, self.max_length, self.dtype = members, batch_size, max_length, dtype
        super().__init__(name)

    def member_scores(self, prompts: Sequence, completions: Sequence, **kwargs) -> np.ndarray:
        """Every member's scores, shape (K, n)."""
        prompts, completions = check_batch(prompts, completions)
        texts = [p + c for p, c in zip(prompts, completions, strict=True)]
        return np.stack([
            score_texts(model, tokenizer, texts, self.batch_size, self.max_length, self.dtype)
            for model, tokenizer in self.members
        ]).reshape(len(self.members), len(texts))

    def score_with_uncertainty(
        self, prompts: Sequence, completions: Sequence, **kwargs
    ) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) over the members, each shape (n,)."""
        table = self.member_scores(prompts, completions, **kwargs)
        return table.mean(axis=0), table.std(axis=0)

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        return self.member_scores(prompts, completions).mean(axis=0)

    def __repr__(self) -> str:
        return f"RewardEnsemble(name={self.__name__!r}, members={len(self.members)})"
