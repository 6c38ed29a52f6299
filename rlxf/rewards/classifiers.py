"""Text classifiers: fine-tune with a (class-weighted) Trainer, predict, save and load; and `ClassifierReward`,
a classifier's view of each completion as a reward.

Class imbalance is handled, not hidden: `class_weights="balanced"` weights the cross-entropy by
n / (n_classes * n_c) (scikit-learn's rule), so for the House tweets (Democrat 2 : 1 Republican) a Republican
tweet counts twice as much as a Democrat one; `ClassifierResult.class_counts` and `.class_weights` record both.
Held-out reports, baselines and calibration are in `rlxf.rewards.reports`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments
from transformers.data.data_collator import DataCollatorWithPadding

from rlxf.infra.batching import BucketedTrainer
from rlxf.infra.checkpoint import atomic_dir
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
from rlxf.progress import progress
from rlxf.rewards.base import RewardFunction, check_batch, check_texts
from rlxf.rewards.linear import LinearTextClassifier, is_linear_dir


@dataclass
class ClassifierSettings:
    """How to fine-tune a sequence classifier with `train_classifier`."""

    epochs: float = 1.0
    """passes over the training texts"""
    max_steps: int = -1
    """stop after this many optimizer steps (-1: run all epochs); the smoke profile sets a small number"""
    learning_rate: float = 5e-5
    """AdamW learning rate (linear decay to 0)"""
    batch_size: int = 16
    """training texts per device per step"""
    gradient_accumulation_steps: int = 1
    """micro-batches summed per optimizer step"""
    eval_batch_size: int = 64
    """texts per forward pass when evaluating"""
    max_length: int = 128
    """tokens per text; longer texts are truncated at the end"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    warmup_steps: int = 0
    """linear learning-rate warm-up steps"""
    logging_steps: int = 10
    """record the training loss every this many steps"""
    seed: int = 0
    """seed for the head initialisation order, shuffling and dropout"""
    output_dir: str | None = None
    """Trainer's scratch directory (no checkpoints are written); None: a temporary directory"""
    dtype: str = "auto"
    """compute precision: "auto" (bf16 mixed precision where the hardware has native bf16, else fp32;
    rlxf.lm.precision), "fp32" or "bf16"; master weights and optimizer states stay fp32"""
    report_to: str = "none"
    """where the trainer also logs: "none", "tensorboard", "trackio" or "wandb" (transformers' `report_to`)"""

    def __post_init__(self) -> None:
        for name in ("batch_size", "gradient_accumulation_steps", "eval_batch_size", "max_length", "logging_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ClassifierSettings.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError(f"ClassifierSettings.max_steps must be -1 (use epochs) or >= 1, got {self.max_steps}")
        if not self.epochs > 0:
            raise ValueError(f"ClassifierSettings.epochs must be > 0, got {self.epochs}")
        if not self.learning_rate > 0:
            raise ValueError(f"ClassifierSettings.learning_rate must be > 0, got {self.learning_rate}")
        check_dtype(self.dtype, "ClassifierSettings.dtype")
        check_report_to(self.report_to, "ClassifierSettings.report_to")


@dataclass
class ClassifierResult:
    """What `train_classifier` returns: the trained model and plain-data history."""

    model: torch.nn.Module
    tokenizer: object
    history: list[dict]
    """one dict per logged step: `step`, `epoch` and `loss` (training) or `eval_loss`"""
    seconds: float
    class_counts: list[int]
    """training texts per class index"""
    class_weights: list[float] | None
    """cross-entropy weight per class index, None when unweighted"""
    settings: ClassifierSettings = field(repr=False)


def check_labels(labels: Sequence, n: int, num_labels: int, what: str) -> np.ndarray:
    """Integer class indices in [0, num_labels), one per text; NaN (e.g. MONA 'not assessed') is an error."""
    values = np.asarray(labels, dtype=float)
    if values.ndim != 1 or len(values) != n:
        raise ValueError(f"{what} has {len(values)} entries (shape {values.shape}), expected {n}: one per text")
    bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0) | (values >= num_labels)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}[{index}] is {values[index]!r}; expected an integer class index in 0..{num_labels - 1} "
            "(drop unlabelled rows such as MONA's not-assessed conditions first)"
        )
    return values.astype(np.int64)


def balanced_class_weights(labels: np.ndarray, num_labels: int) -> np.ndarray:
    """n / (num_labels * n_c) per class (scikit-learn's 'balanced'); every class must occur."""
    counts = np.bincount(labels, minlength=num_labels)
    if (counts == 0).any():
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"class(es) {missing} never occur in the training labels: cannot balance class weights")
    return len(labels) / (num_labels * counts)


class _EncodedTexts(torch.utils.data.Dataset):
    """Tokenised texts (unpadded) with optional labels, for Trainer and DataCollatorWithPadding."""

    def __init__(self, tokenizer, texts: list[str], labels: np.ndarray | None, max_length: int):
        self.encodings = tokenizer(texts, truncation=True, max_length=max_length)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, index: int) -> dict:
        item = {key: values[index] for key, values in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = int(self.labels[index])
        return item


def _weighted_cross_entropy(weights: torch.Tensor):
    """A Trainer `compute_loss_func`: class-weighted cross-entropy, normalised per example across accumulation."""

    def loss_func(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        per_example = torch.nn.functional.cross_entropy(
            logits.float(), labels, weight=weights.to(logits.device), reduction="none"
        )
        # Trainer treats a compute_loss_func loss as already normalised over the whole accumulated batch.
        if num_items_in_batch is not None:
            return per_example.sum() / num_items_in_batch
        return per_example.mean()

    return loss_func


def train_classifier(
    model,
    tokenizer,
    train_texts: Sequence[str],
    train_labels: Sequence,
    *,
    eval_texts: Sequence[str] | None = None,
    eval_labels: Sequence | None = None,
    settings: ClassifierSettings,
    class_weights: str | Sequence[float] | None = "balanced",
) -> ClassifierResult:
    """Fine-tune a sequence classifier (all its parameters) with transformers' Trainer in `settings.dtype`.

    `class_weights`: "balanced" (see the module docstring), None (plain cross-entropy) or one weight per class.
    The eval texts, when given, are scored at the end of every epoch and once more at the end of training.
    """
    num_labels = int(model.config.num_labels)
    train_texts = check_texts(train_texts, "train_texts")
    if not train_texts:
        raise ValueError("train_texts is empty: expected at least one training text")
    labels = check_labels(train_labels, len(train_texts), num_labels, "train_labels")
    if (eval_texts is None) != (eval_labels is None):
        raise ValueError("give both eval_texts and eval_labels, or neither")
    eval_set = None
    if eval_texts is not None:
        eval_texts = check_texts(eval_texts, "eval_texts")
        eval_set = _EncodedTexts(
            tokenizer, eval_texts, check_labels(eval_labels, len(eval_texts), num_labels, "eval_labels"),
            settings.max_length,
        )
    if tokenizer.pad_token is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token before training")
    low_precision = {str(p.dtype) for p in model.parameters() if p.dtype != torch.float32}
    if low_precision and not torch.cuda.is_available():
        raise ValueError(
            f"the model has {sorted(low_precision)} weights: train in fp32 on CPU (load it with dtype='fp32')"
        )

    counts = np.bincount(labels, minlength=num_labels)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be 'balanced', None or one weight per class, got {class_weights!r}")
        weights = balanced_class_weights(labels, num_labels)
    elif class_weights is None:
        weights = None
    else:
        weights = np.asarray(class_weights, dtype=float)
        if weights.shape != (num_labels,) or not (weights > 0).all():
            raise ValueError(f"class_weights must be {num_labels} positive numbers, got {list(class_weights)}")

    with tempfile.TemporaryDirectory(prefix="rlxf-classifier-") as scratch:
        args = TrainingArguments(
            output_dir=settings.output_dir or scratch,
            num_train_epochs=settings.epochs,
            max_steps=settings.max_steps,
            learning_rate=settings.learning_rate,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.eval_batch_size,
            gradient_accumulation_steps=settings.gradient_accumulation_steps,
            weight_decay=settings.weight_decay,
            warmup_steps=settings.warmup_steps,
            logging_steps=settings.logging_steps,
            logging_first_step=True,
            eval_strategy="epoch" if eval_set is not None else "no",
            save_strategy="no",
            report_to=settings.report_to,
            **trainer_precision_kwargs(training_precision(settings.dtype)),
            seed=settings.seed,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
        )
        trainer = BucketedTrainer(
            model=model,
            args=args,
            train_dataset=_EncodedTexts(tokenizer, train_texts, labels, settings.max_length),
            eval_dataset=eval_set,
            data_collator=DataCollatorWithPadding(tokenizer),
            compute_loss_func=None if weights is None else _weighted_cross_entropy(torch.tensor(weights).float()),
            callbacks=[thread_budget_callback()],
        )
        start = time.perf_counter()
        trainer.train()
        final_step = trainer.state.global_step
        evaluated = any("eval_loss" in row and row.get("step") == final_step for row in trainer.state.log_history)
        if eval_set is not None and not evaluated:
            trainer.evaluate()
        seconds = time.perf_counter() - start

    history = [
        {key: row[key] for key in ("step", "epoch", "loss", "eval_loss") if key in row}
        for row in trainer.state.log_history
        if "loss" in row or "eval_loss" in row
    ]
    trained = without_autocast_wrapper(trainer.model)
    trained.eval()
    return ClassifierResult(
        model=trained,
        tokenizer=tokenizer,
        history=history,
        seconds=seconds,
        class_counts=counts.tolist(),
        class_weights=None if weights is None else [float(w) for w in weights],
        settings=settings,
    )


@torch.no_grad()
def predict_logits(model, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int = 512,
                   dtype: str | Precision = "auto") -> np.ndarray:
    """Raw logits, shape (n, num_labels), batched without gradients on the model's device under the compute
    precision `dtype` (rlxf.lm.precision: bf16 autocast where the hardware has it); order kept.

    A `LinearTextClassifier` (tokenizer None) gives its log-probabilities.
    """
    texts = check_texts(texts, "texts")
    if isinstance(model, LinearTextClassifier):
        return model.predict_logits(texts)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    num_labels = int(model.config.num_labels)
    if not texts:
        return np.zeros((0, num_labels), dtype=np.float32)
    if tokenizer.pad_token is None and len(texts) > 1:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token to score texts in batches")
    encoded = tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(
                f"texts[{index}] ({texts[index]!r}) encodes to no tokens: this tokenizer adds no special tokens, "
                "so an empty text cannot be scored"
            )
    device = next(model.parameters()).device
    # Sorting by length keeps padding (and CPU time) small; the result goes back to the input order.
    order = np.argsort([len(ids) for ids in encoded], kind="stable")
    logits = np.zeros((len(texts), num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    compute = precision(dtype, device)
    try:
        for start in progress(range(0, len(texts), batch_size), desc="classify", unit="batch"):
            rows = order[start : start + batch_size]
            # Right padding: sequence-classification heads on causal LMs read the last non-pad token.
            batch = tokenizer.pad(
                {"input_ids": [encoded[i] for i in rows]}, padding=True, padding_side="right", return_tensors="pt"
            ).to(device)
            with compute.autocast(), fp32_head(model, compute):
                logits[rows] = model(**batch).logits.float().cpu().numpy()
    finally:
        model.train(was_training)
    return logits


def predict_proba(model, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int = 512,
                  dtype: str | Precision = "auto") -> np.ndarray:
    """Class probabilities (softmax of the logits), shape (n, num_labels)."""
    logits = predict_logits(model, tokenizer, texts, batch_size=batch_size, max_length=max_length, dtype=dtype)
    return torch.softmax(torch.from_numpy(logits), dim=-1).numpy()


def save_classifier(model, tokenizer, directory: str | Path) -> Path:
    """Write model (safetensors) and tokenizer to `directory`, atomically (a reader never sees half of it)."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return directory


def load_saved_classifier(directory: str | Path, *, device: str | torch.device | None = None):
    """(model, tokenizer) written by `save_classifier`, in eval mode, on `device` (default: CPU); for a directory
    written by `LinearTextClassifier.save`, (that classifier, None)."""
    directory = Path(directory)
    if is_linear_dir(directory):
        return LinearTextClassifier.load(directory), None
    if not (directory / "config.json").is_file() or not any(directory.glob("*.safetensors")):
        raise FileNotFoundError(f"{directory}: no saved classifier here (expected config.json and *.safetensors)")
    model = AutoModelForSequenceClassification.from_pretrained(directory, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model.to(device or "cpu").eval()
    return model, tokenizer


class ClassifierReward(RewardFunction):
    """A text classifier's view of each completion: one label's probability or logit, or a binary neutrality.

    `output`: "probability" (P(label), in [0, 1]), "logit" (the label's raw logit, as TRL's gpt2-sentiment example),
    "log_odds" (log P(label) - log P(not label); for two classes the difference of the two logits: unlike a raw logit
    it does not depend on the softmax's free shift, so its scale is the classifier's confidence), or "neutrality"
    (binary classifiers only: 1 - |P(0) - P(1)|, in [0, 1], 1 when the classifier cannot tell the classes apart: e.g.
    Democrat vs Republican).
    `label` is a class index or a name from `model.config.label2id`. With `include_prompt` the classifier reads
    prompt + completion; by default only the completion.
    """

    OUTPUTS = ("probability", "logit", "log_odds", "neutrality")

    def __init__(
        self,
        model,
        tokenizer,
        *,
        label: int | str = 1,
        output: str = "probability",
        include_prompt: bool = False,
        batch_size: int = 32,
        max_length: int = 512,
        name: str | None = None,
        dtype: str | Precision = "auto",
    ):
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {self.OUTPUTS}, got {output!r}")
        num_labels = int(model.config.num_labels)
        if output == "neutrality" and num_labels != 2:
            raise ValueError(f"output='neutrality' needs a binary classifier; this one has {num_labels} labels")
        self.label = self._label_index(model, label, num_labels)
        self.model, self.tokenizer = model, tokenizer
        self.output, self.include_prompt = output, include_prompt
        self.batch_size, self.max_length, self.dtype = batch_size, max_length, dtype
        self.model.eval()
        super().__init__(name or f"classifier_{output}" + ("" if output == "neutrality" else f"_{label}"))

    @classmethod
    def from_saved(cls, directory, *, device=None, **kwargs):
        """The reward on a classifier written by `save_classifier` (loaded once, here)."""
        model, tokenizer = load_saved_classifier(directory, device=device)
        return cls(model, tokenizer, **kwargs)

    @staticmethod
    def _label_index(model, label: int | str, num_labels: int) -> int:
        if isinstance(label, str):
            label2id = {str(k): int(v) for k, v in (getattr(model.config, "label2id", None) or {}).items()}
            if label not in label2id:
                raise ValueError(f"label {label!r} is not one of the model's labels {sorted(label2id)}")
            return label2id[label]
        if not isinstance(label, (int, np.integer)) or not 0 <= label < num_labels:
            raise ValueError(f"label must be a class index in 0..{num_labels - 1} or a label name, got {label!r}")
        return int(label)

    def texts(self, prompts: list[str], completions: list[str], **kwargs) -> list[str]:
        """The texts the classifier reads."""
        if self.include_prompt:
            return [p + c for p, c in zip(prompts, completions, strict=True)]
        return list(completions)

    def logits(self, prompts: Sequence, completions: Sequence, **kwargs) -> np.ndarray:
        """All classes' logits, shape (n, num_labels)."""
        prompts, completions = check_batch(prompts, completions)
        texts = self.texts(prompts, completions, **kwargs)
        return predict_logits(self.model, self.tokenizer, texts, batch_size=self.batch_size, max_length=self.max_length,
                              dtype=self.dtype)

    def probabilities(self, prompts: Sequence, completions: Sequence, **kwargs) -> np.ndarray:
        """All classes' probabilities, shape (n, num_labels): e.g. columns p_dem, p_rep of the party classifier."""
        logits = self.logits(prompts, completions, **kwargs)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def score(self, prompts: list[str], completions: list[str], **kwargs) -> np.ndarray:
        if self.output == "logit":
            return self.logits(prompts, completions, **kwargs)[:, self.label]
        if self.output == "log_odds":
            logits = self.logits(prompts, completions, **kwargs).astype(np.float64)
            others = np.delete(logits, self.label, axis=1)
            top = others.max(axis=1, keepdims=True)
            return logits[:, self.label] - (top[:, 0] + np.log(np.exp(others - top).sum(axis=1)))
        proba = self.probabilities(prompts, completions, **kwargs)
        if self.output == "neutrality":
            return 1.0 - np.abs(proba[:, 0] - proba[:, 1])
        return proba[:, self.label]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.__name__!r}, model={type(self.model).__name__}, "
            f"label={self.label}, output={self.output!r})"
        )
