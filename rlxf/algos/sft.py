"""LoRA supervised fine-tuning with `transformers.Trainer` or TRL's `SFTTrainer`, perplexity, and adapter loading.

Both methods see the same token sequences: a text is `tokenizer(text + eos)`; a (prompt, completion) pair is
`tokenizer(prompt + completion + eos)` with the tokens shared with `tokenizer(prompt)` masked out of the loss,
truncated to `max_length` from the end, examples left without a target token dropped (TRL 1.16's own recipe).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, get_peft_model
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from rlxf.infra.batching import BucketByLength, BucketedTrainer
from rlxf.infra.threads import thread_budget_callback
from rlxf.infra.tracking import check_report_to
from rlxf.lm.adapters import LORA_TARGET_MODULES, check_target_modules, lora_config, save_adapter, write_card
from rlxf.lm.logprobs import sequence_nll
from rlxf.lm.models import base_model_reference
from rlxf.lm.precision import (
    Precision,
    check_dtype,
    store_frozen_weights,
    trainer_precision_kwargs,
    training_precision,
    without_autocast_wrapper,
)

METHODS = ("trainer", "sft_trainer")
IGNORE_INDEX = -100  # label value the loss skips (PyTorch's cross_entropy default)


@dataclass
class SFTSettings:
    """Settings of one LoRA fine-tuning run (both methods read the same fields)."""

    method: str = "trainer"
    """"trainer": `transformers.Trainer` with rlxf's causal-LM collator; "sft_trainer": TRL's `SFTTrainer`."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch input during training."""
    lora_target_modules: str | tuple[str, ...] = LORA_TARGET_MODULES
    """Names of the linear layers that get a LoRA adapter (the attention projections of Llama-style models)."""
    learning_rate: float = 2e-4
    """Peak learning rate of AdamW (linear decay to zero over max_steps, no warmup)."""
    max_steps: int = 100
    """Optimizer steps to train for."""
    batch_size: int = 8
    """Sequences per device per forward pass."""
    grad_accum: int = 1
    """Forward passes accumulated per optimizer step (effective batch = batch_size * grad_accum)."""
    max_length: int = 128
    """Tokens kept per training sequence (from the start)."""
    seed: int = 0
    """Seed of the LoRA initialisation, data order and the eval split."""
    logging_steps: int = 10
    """Log the training loss (and the eval loss, when there is eval data) every this many steps, and at the end."""
    output_dir: str = "artifacts/adapters/sft"
    """Where the adapter, tokenizer and model card README.md are written."""
    eval_fraction: float = 0.0
    """Share of the training data held out for the eval loss when no eval data is passed (0: none)."""
    dtype: str = "auto"
    """compute precision: "auto" (bf16 mixed precision where the hardware has native bf16, else fp32;
    rlxf.lm.precision), "fp32" or "bf16"; master weights and optimizer states stay fp32"""
    report_to: str = "none"
    """where the trainer also logs: "none", "tensorboard", "trackio" or "wandb" (transformers' `report_to`)"""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"SFTSettings.method must be one of {METHODS}, got {self.method!r}")
        self.lora_target_modules = check_target_modules("SFTSettings", self.lora_target_modules)
        for name in ("lora_r", "lora_alpha", "max_steps", "batch_size", "grad_accum", "max_length", "logging_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SFTSettings.{name} must be an integer >= 1, got {value!r}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ValueError(f"SFTSettings.lora_dropout must be in [0, 1), got {self.lora_dropout!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"SFTSettings.learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(f"SFTSettings.eval_fraction must be in [0, 1), got {self.eval_fraction!r}")
        check_dtype(self.dtype, "SFTSettings.dtype")
        check_report_to(self.report_to, "SFTSettings.report_to")
        if not str(self.output_dir):
            raise ValueError("SFTSettings.output_dir must be a directory path, got an empty string")


@dataclass
class SFTResult:
    """What one LoRA fine-tuning run produced."""

    adapter_dir: Path
    """Directory holding the PEFT adapter (adapter_model.safetensors, adapter_config.json), tokenizer and README.md."""
    model: Any
    """The trained `PeftModel` (adapter not merged), in eval mode, on the training device."""
    history: list[dict[str, float]]
    """One row per logged step: {"step", "loss"} and "eval_loss" where evaluated."""
    train_seconds: float
    """Wall-clock seconds of `trainer.train()` (evaluations included)."""
    trainable_params: int
    """Number of trainable (LoRA) parameters."""
    adapter_bytes: int
    """Size of adapter_model.safetensors on disk."""
    card: dict[str, Any] = field(default_factory=dict)
    """The fields written to the model card README.md."""


# ---------------------------------------------------------------------------------------------------------- inputs
def _as_list(name: str, items: Iterable, what: str) -> list:
    """A list from any iterable (list, tuple, pandas Series) except a lone string."""
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ValueError(f"{name} must be a list of {what}, got {type(items).__name__}")
    return list(items)


def _check_texts(name: str, texts: Iterable[str]) -> list[str]:
    texts = _as_list(name, texts, "strings")
    if len(texts) == 0:
        raise ValueError(f"{name} is empty: expected at least one text")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"{name}[{index}] must be a str, got {type(text).__name__}: {text!r:.60}")
        if not text.strip():
            raise ValueError(f"{name}[{index}] is empty or whitespace only")
    return texts


def _check_pairs(name: str, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    pairs = _as_list(name, pairs, "(prompt, completion) pairs")
    if len(pairs) == 0:
        raise ValueError(f"{name} is empty: expected at least one (prompt, completion) pair")
    checked = []
    for index, pair in enumerate(pairs):
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise ValueError(f"{name}[{index}] must be a (prompt, completion) pair, got {pair!r:.80}")
        prompt, completion = pair
        if not isinstance(prompt, str) or not isinstance(completion, str):
            raise ValueError(
                f"{name}[{index}] must hold two str, got ({type(prompt).__name__}, {type(completion).__name__})"
            )
        if not completion.strip():
            raise ValueError(f"{name}[{index}] has an empty completion")
        checked.append((prompt, completion))
    return checked


def _check_tokenizer(tokenizer) -> None:
    if tokenizer.eos_token is None:
        raise ValueError("the tokenizer has no eos_token: set one (every sequence is trained to end with it)")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token (e.g. to the eos token)")


def _with_eos(text: str, eos: str) -> str:
    return text if text.endswith(eos) else text + eos


def tokenize_texts(tokenizer, texts: Sequence[str], *, max_length: int, add_eos: bool = True) -> list[dict]:
    """Language-modelling examples: input_ids of `text + eos` (truncated to max_length) and labels equal to them."""
    examples = []
    for text in _check_texts("texts", texts):
        ids = tokenizer(_with_eos(text, tokenizer.eos_token) if add_eos else text)["input_ids"][:max_length]
        examples.append({"input_ids": ids, "labels": list(ids)})
    return examples


def tokenize_pairs(tokenizer, pairs: Sequence[tuple[str, str]], *, max_length: int, add_eos: bool = True) -> list[dict]:
    """Prompt-completion examples whose prompt tokens carry label -100, so only the completion is trained/scored."""
    examples = []
    for prompt, completion in _check_pairs("pairs", pairs):
        prompt_ids = tokenizer(prompt)["input_ids"]
        ids = tokenizer(prompt + (_with_eos(completion, tokenizer.eos_token) if add_eos else completion))["input_ids"]
        # Tokens may merge across the boundary; the completion starts where the two tokenizations diverge (as in TRL).
        shared = 0
        while shared < min(len(prompt_ids), len(ids)) and prompt_ids[shared] == ids[shared]:
            shared += 1
        labels = [IGNORE_INDEX] * shared + ids[shared:]
        ids, labels = ids[:max_length], labels[:max_length]
        if any(label != IGNORE_INDEX for label in labels):  # a prompt filling max_length leaves nothing to learn
            examples.append({"input_ids": ids, "labels": labels})
    return examples


@dataclass
class CausalLMCollator:
    """Pads examples on the right: input_ids with the pad id, labels with -100, attention_mask 1 on real tokens."""

    pad_token_id: int

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(example["input_ids"]) for example in examples)
        input_ids = torch.full((len(examples), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(examples), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.long)
        for row, example in enumerate(examples):
            length = len(example["input_ids"])
            input_ids[row, :length] = torch.tensor(example["input_ids"])
            labels[row, :length] = torch.tensor(example.get("labels", example["input_ids"]))
            attention_mask[row, :length] = 1
        return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}


def _split_off_eval(items: list, fraction: float, seed: int) -> tuple[list, list]:
    """(train, eval): a seeded random `fraction` (at least one item) held out, the rest kept in order."""
    if fraction == 0.0:
        return items, []
    if len(items) < 2:
        raise ValueError(f"eval_fraction={fraction} needs at least 2 training examples, got {len(items)}")
    n_eval = min(len(items) - 1, max(1, round(len(items) * fraction)))
    held = set(random.Random(seed).sample(range(len(items)), n_eval))
    return [x for i, x in enumerate(items) if i not in held], [x for i, x in enumerate(items) if i in held]


# ---------------------------------------------------------------------------------------------------------- training
def _device_kwargs(dtype: str) -> dict[str, Any]:
    """The GPU when there is one, else the CPU; bf16 mixed precision where `rlxf.lm.precision` picks it, else fp32."""
    return trainer_precision_kwargs(training_precision(dtype))


def _training_kwargs(settings: SFTSettings, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments shared by both methods (SFTConfig extends TrainingArguments)."""
    return {
        "output_dir": str(settings.output_dir),
        "max_steps": settings.max_steps,
        "per_device_train_batch_size": settings.batch_size,
        "per_device_eval_batch_size": settings.batch_size,
        "gradient_accumulation_steps": settings.grad_accum,
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": "linear",
        "warmup_steps": 0,
        "seed": settings.seed,
        "data_seed": settings.seed,
        "logging_steps": settings.logging_steps,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": settings.logging_steps if has_eval else None,
        "save_strategy": "no",  # the adapter is saved once, at the end, by train_lora_sft
        "report_to": settings.report_to,
        "dataloader_num_workers": 0,
        # TRL turns checkpointing on by default (as `gradient_checkpointing`, the deprecated alias); a small model
        # needs no memory savings, and on CPU it only costs time.
        "activation_checkpointing": False,
        "label_names": ["labels"],
        **_device_kwargs(settings.dtype),
    }


class _LogLastStep(TrainerCallback):
    """Logs the training loss at the final step too, so a history always ends where training ended."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= state.max_steps:
            control.should_log = True
        return control


def _prepare_data(train_texts, train_pairs, eval_texts, eval_pairs, settings: SFTSettings):
    """Validated (kind, train, eval) with kind "texts" or "pairs"; eval split off when none is given."""
    if (train_texts is None) == (train_pairs is None):
        raise ValueError("pass exactly one of train_texts (plain LM text) or train_pairs ((prompt, completion) pairs)")
    if train_texts is not None:
        if eval_pairs is not None:
            raise ValueError("eval_pairs given with train_texts: pass eval_texts to match the training data")
        kind, train = "texts", _check_texts("train_texts", train_texts)
        evals = None if eval_texts is None else _check_texts("eval_texts", eval_texts)
    else:
        if eval_texts is not None:
            raise ValueError("eval_texts given with train_pairs: pass eval_pairs to match the training data")
        kind, train = "pairs", _check_pairs("train_pairs", train_pairs)
        evals = None if eval_pairs is None else _check_pairs("eval_pairs", eval_pairs)
    if evals is None:
        train, evals = _split_off_eval(train, settings.eval_fraction, settings.seed)
    return kind, train, evals


def build_trainer(
    model,
    tokenizer,
    train_texts: Sequence[str] | None = None,
    *,
    train_pairs: Sequence[tuple[str, str]] | None = None,
    eval_texts: Sequence[str] | None = None,
    eval_pairs: Sequence[tuple[str, str]] | None = None,
    settings: SFTSettings,
) -> Trainer:
    """A ready-to-train Trainer or SFTTrainer with a fresh LoRA adapter on a private copy of `model`."""
    if not isinstance(settings, SFTSettings):
        raise ValueError(f"settings must be an SFTSettings, got {type(settings).__name__}")
    if isinstance(model, PeftModel):
        raise ValueError("model already carries adapters: pass the bare base model (rlxf.lm.adapters stacks them)")
    _check_tokenizer(tokenizer)
    kind, train, evals = _prepare_data(train_texts, train_pairs, eval_texts, eval_pairs, settings)
    # A private copy: the caller's base model stays bare, so one base serves every adapter and the base metrics.
    model = copy.deepcopy(model)
    callbacks = [_LogLastStep(), thread_budget_callback()]

    if settings.method == "trainer":
        encode = tokenize_texts if kind == "texts" else tokenize_pairs
        train_examples = encode(tokenizer, train, max_length=settings.max_length)
        eval_examples = encode(tokenizer, evals, max_length=settings.max_length) if evals else None
        set_seed(settings.seed)  # the LoRA A matrices are initialised at random
        peft_model = get_peft_model(model, lora_config(settings))
        chosen = training_precision(settings.dtype)
        if chosen.dtype == torch.float32:  # on CPU the frozen Linears run oneDNN's prepacked matmul (not MKL's)
            store_frozen_weights(peft_model, chosen)
        return BucketedTrainer(
            model=peft_model,
            args=TrainingArguments(**_training_kwargs(settings, bool(evals))),
            data_collator=CausalLMCollator(tokenizer.pad_token_id),
            train_dataset=train_examples,
            eval_dataset=eval_examples,
            processing_class=tokenizer,
            callbacks=callbacks,
        )

    from datasets import Dataset  # imported here: only TRL's path needs Arrow datasets
    from trl import SFTConfig, SFTTrainer

    def as_dataset(items):
        if kind == "texts":
            return Dataset.from_dict({"text": items})
        # The prompt-completion format: SFTTrainer masks the prompt (completion_only_loss defaults to True for it).
        return Dataset.from_dict({"prompt": [p for p, _ in items], "completion": [c for _, c in items]})

    config = SFTConfig(
        **_training_kwargs(settings, bool(evals)),
        max_length=settings.max_length,
        packing=False,
        completion_only_loss=None,
    )
    # SFTTrainer seeds (args.seed) before it wraps the model with peft_config, as the Trainer path does above.
    bucketed_sft_trainer = type("BucketedSFTTrainer", (BucketByLength, SFTTrainer), {})
    return bucketed_sft_trainer(
        model=model,
        args=config,
        train_dataset=as_dataset(train),
        eval_dataset=as_dataset(evals) if evals else None,
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=callbacks,
    )


def _history(log_history: list[dict]) -> list[dict[str, float]]:
    """Merge the trainer's log entries into one row per step: {"step", "loss", "eval_loss"?}."""
    rows: dict[int, dict[str, float]] = {}
    for entry in log_history:
        for key in ("loss", "eval_loss"):
            if key in entry:
                rows.setdefault(entry["step"], {"step": entry["step"]})[key] = float(entry[key])
    return [rows[step] for step in sorted(rows)]


def train_lora_sft(
    model,
    tokenizer,
    train_texts: Sequence[str] | None = None,
    *,
    train_pairs: Sequence[tuple[str, str]] | None = None,
    eval_texts: Sequence[str] | None = None,
    eval_pairs: Sequence[tuple[str, str]] | None = None,
    settings: SFTSettings,
    model_card: dict[str, Any] | None = None,
) -> SFTResult:
    """Train a LoRA adapter on texts (plain LM loss) or (prompt, completion) pairs (loss on the completion only).

    `model` itself is not modified (training runs on a copy). The adapter, tokenizer and a README.md model card
    (training facts, then the `model_card` fields, which win on clashes) are written to `settings.output_dir`.
    """
    if model_card is not None and not isinstance(model_card, dict):
        raise ValueError(f"model_card must be a dict of field -> value, got {type(model_card).__name__}")
    trainer = build_trainer(
        model,
        tokenizer,
        train_texts,
        train_pairs=train_pairs,
        eval_texts=eval_texts,
        eval_pairs=eval_pairs,
        settings=settings,
    )
    peft_model = trainer.model
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    peft_model = without_autocast_wrapper(peft_model)
    peft_model.eval()

    adapter_dir = Path(settings.output_dir)
    adapter_dir.mkdir(parents=True, exist_ok=True)
    # Only the adapter trained here (a base that carries others would otherwise have them all saved beside it).
    adapter_name = peft_model.active_adapter
    save_adapter(peft_model, adapter_name, adapter_dir)
    tokenizer.save_pretrained(str(adapter_dir))
    weights = adapter_dir / "adapter_model.safetensors"
    if not weights.is_file():
        raise RuntimeError(f"PEFT did not write {weights}; the adapter was not saved in safetensors format")

    history = _history(trainer.state.log_history)
    losses = [row["loss"] for row in history if "loss" in row]
    eval_losses = [row["eval_loss"] for row in history if "eval_loss" in row]
    # The card's row keeps its name "target_modules" (and its place among the settings).
    settings_fields = {("target_modules" if k == "lora_target_modules" else k): v
                       for k, v in asdict(settings).items() if k not in ("output_dir", "report_to")}
    card: dict[str, Any] = {
        "data": "texts (causal-LM loss)" if train_texts is not None else "(prompt, completion) pairs (completion loss)",
        "train_examples": len(trainer.train_dataset),
        "eval_examples": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
        "steps": trainer.state.global_step,
        **settings_fields,
        "target_modules": (settings.lora_target_modules if isinstance(settings.lora_target_modules, str)
                           else ",".join(settings.lora_target_modules)),
        "trainable_params": trainable,
        "train_seconds": round(seconds, 2),
        "final_train_loss": losses[-1] if losses else float("nan"),
        **({"final_eval_loss": eval_losses[-1]} if eval_losses else {}),
        **(model_card or {}),
    }
    base_model, base_weights = base_model_reference(model)
    card = {"base_model": base_model, **card}
    write_card(adapter_dir, {k: v for k, v in card.items() if k != "base_model"}, base_model=base_model,
               weights=base_weights, method=settings.method, title=f"{adapter_dir.name} (LoRA SFT)")
    return SFTResult(
        adapter_dir=adapter_dir,
        model=peft_model,
        history=history,
        train_seconds=seconds,
        trainable_params=trainable,
        adapter_bytes=weights.stat().st_size,
        card=card,
    )


# ---------------------------------------------------------------------------------------------------------- evaluation
def _mean_nll(model, examples: list[dict], *, pad_token_id: int, batch_size: int, dtype: str | Precision) -> float:
    """Token-weighted mean next-token NLL over the labelled tokens of `examples` (rlxf.lm.logprobs.sequence_nll).

    The labelled tokens of an example are a suffix (`tokenize_texts`: all, `tokenize_pairs`: the completion).
    """
    first = [next((i for i, label in enumerate(e["labels"]) if label != IGNORE_INDEX), len(e["labels"]))
             for e in examples]
    return sequence_nll(model, [e["input_ids"] for e in examples], first, pad_id=pad_token_id,
                        batch_size=batch_size, dtype=dtype)


def perplexity(model, tokenizer, texts: Sequence[str], *, batch_size: int = 8, max_length: int = 256,
               dtype: str | Precision = "auto") -> float:
    """exp(token-weighted mean NLL) of `texts`, each scored as trained: `text + eos`, truncated to max_length.

    `dtype`: the compute precision (rlxf.lm.precision), the same rule as every other log-probability in rlxf.
    """
    _check_tokenizer(tokenizer)
    examples = tokenize_texts(tokenizer, texts, max_length=max_length)
    return math.exp(_mean_nll(model, examples, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                              dtype=dtype))


def completion_perplexity(
    model, tokenizer, pairs: Sequence[tuple[str, str]], *, batch_size: int = 8, max_length: int = 256,
    dtype: str | Precision = "auto"
) -> float:
    """exp(mean NLL) over the completion tokens of (prompt, completion) pairs; the prompt is context only."""
    _check_tokenizer(tokenizer)
    examples = tokenize_pairs(tokenizer, pairs, max_length=max_length)
    if not examples:
        raise ValueError(f"every prompt fills max_length={max_length}: no completion token is left to score")
    return math.exp(_mean_nll(model, examples, pad_token_id=tokenizer.pad_token_id, batch_size=batch_size,
                              dtype=dtype))
