"""Reward models for noisy or divided labellers: Iterated Data Smoothing, and a mean-and-variance head.

**IDS** (Zhu, Jordan and Jiao 2024, "Iterative Data Smoothing"): a Bradley-Terry model trained on *soft* labels
y_i = P(chosen_i preferred), which start at 1 (the labels as given). After every epoch each training pair is relabelled
with the model's own soft preference, mixed with its label so far:

    y_i <- (1 - alpha) * y_i + alpha * sigmoid(r(prompt + chosen_i) - r(prompt + rejected_i))

(the paper's update; after t epochs the original label keeps weight (1 - alpha)^t). A flipped label that the model,
fitted to the other pairs, disagrees with drifts toward 0 and stops pulling the model its way. The loss is the soft
Bradley-Terry cross-entropy -[y log sigmoid(d) + (1 - y) log sigmoid(-d)], d = r(chosen) - r(rejected); with y = 1 it
is TRL's RewardTrainer loss, and IDS runs in that trainer (`SmoothedRewardTrainer`), so a plain model and an IDS model
differ only in the labels.

**Mean-and-variance model** (distributional preference learning, Siththaranjan, Laidlaw and Hadfield-Menell 2023):
each text gets a utility mean mu and spread sigma (a sequence classifier with two outputs: mu and softplus(raw) +
`MIN_SIGMA`), and P(a preferred to b) = Phi((mu_a - mu_b) / sqrt(sigma_a^2 + sigma_b^2)). Where annotators with hidden
contexts disagree, the labels of similar pairs conflict and the model can only fit them with a large sigma. TRL's
RewardTrainer requires one output per text, so this one trains in a short loop of its own.
"""

from __future__ import annotations

import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import TrainerCallback
from trl import RewardTrainer

from rlxf.infra.threads import thread_budget_callback
from rlxf.lm.precision import training_precision
from rlxf.progress import progress
from rlxf.rewards.bradley_terry import (
    PreferenceResult,
    PreferenceSettings,
    bradley_terry_loss,
    check_pairs,
    check_reward_model,
    encode_texts,
    log_rows,
    pad_batch,
    pair_dataset,
    reward_config,
    score_pairs,
    text_outputs,
    trained_model,
)

MIN_SIGMA = 1e-3
"""the smallest spread the mean-and-variance model can give a text (keeps the probit finite)"""


def ids_relabel(labels, preferences, alpha: float) -> np.ndarray:
    """One IDS relabelling: (1 - alpha) * labels + alpha * preferences, each a P(chosen preferred) per pair."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the IDS step size) must be in [0, 1], got {alpha}")
    labels, preferences = np.asarray(labels, dtype=float), np.asarray(preferences, dtype=float)
    if labels.shape != preferences.shape:
        raise ValueError(f"ids_relabel needs one preference per label: got {labels.shape} and {preferences.shape}")
    for name, values in (("labels", labels), ("preferences", preferences)):
        if not np.all((values >= 0) & (values <= 1)):
            raise ValueError(f"ids_relabel: {name} must be probabilities in [0, 1]")
    return (1 - alpha) * labels + alpha * preferences


class SmoothedRewardTrainer(RewardTrainer):
    """TRL's RewardTrainer with the soft Bradley-Terry loss on `soft_labels[pair index]`.

    The pair index rides in the dataset's `margin` column: the one extra column TRL's preference collator passes on.
    """

    def __init__(self, *args, soft_labels: torch.Tensor, **kwargs):
        super().__init__(*args, **kwargs)
        self.soft_labels = soft_labels

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop("margin").long().cpu()
        inputs["use_cache"] = False
        outputs = model(**inputs)
        chosen, rejected = torch.chunk(outputs.logits.squeeze(-1).float(), chunks=2)
        diff = chosen - rejected
        loss = bradley_terry_loss(chosen, rejected, self.soft_labels[index].to(diff.device)).mean()
        mode = "train" if self.model.training else "eval"
        with torch.no_grad():
            self._metrics[mode]["accuracy"].append((diff > 0).float().mean().item())
            self._metrics[mode]["margin"].append(diff.mean().item())
        return (loss, outputs) if return_outputs else loss


class _Relabel(TrainerCallback):
    """After every epoch: every training pair's label mixed with the model's soft preference (`ids_relabel`)."""

    def __init__(self, trainer_ref: list, pairs: list[dict], alpha: float, settings: PreferenceSettings):
        self.trainer_ref, self.pairs, self.alpha, self.settings = trainer_ref, pairs, alpha, settings
        self.history: list[np.ndarray] = []

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        trainer = self.trainer_ref[0]
        chosen, rejected = score_pairs(model, trainer.processing_class, self.pairs, max_length=self.settings.max_length)
        preferences = 1.0 / (1.0 + np.exp(-(chosen - rejected).astype(float)))
        labels = ids_relabel(trainer.soft_labels.numpy(), preferences, self.alpha)
        trainer.soft_labels.copy_(torch.from_numpy(labels).float())
        self.history.append(labels)


def train_ids_reward_model(model, tokenizer, pairs, settings: PreferenceSettings, *, alpha: float
                           ) -> tuple[PreferenceResult, list[np.ndarray]]:
    """A Bradley-Terry model trained with Iterated Data Smoothing -> (result, the labels after each epoch).

    `settings.epochs` is the number of relabellings (one after each epoch); use whole epochs.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the IDS step size) must be in [0, 1], got {alpha}")
    pairs = check_pairs(pairs)
    if not pairs:
        raise ValueError("pairs is empty: expected at least one preference pair")
    check_reward_model(model, tokenizer)
    dataset = pair_dataset(tokenizer, pairs, settings.max_length, margin=[float(i) for i in range(len(pairs))])
    trainer_ref: list = []
    relabel = _Relabel(trainer_ref, pairs, alpha, settings)
    with tempfile.TemporaryDirectory(prefix="rlxf-ids-") as scratch:
        trainer = SmoothedRewardTrainer(model=model, args=reward_config(settings, scratch), train_dataset=dataset,
                                        processing_class=tokenizer, soft_labels=torch.ones(len(pairs)),
                                        callbacks=[relabel, thread_budget_callback()])
        trainer_ref.append(trainer)
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    result = PreferenceResult(trained_model(trainer), tokenizer, log_rows(trainer), seconds, len(pairs), settings)
    return result, relabel.history


# ------------------------------------------------------------------------------- mean-and-variance (distributional)


def mean_and_sigma(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A two-output head's (mu, sigma): the first output, and softplus of the second plus MIN_SIGMA."""
    return outputs[..., 0], F.softplus(outputs[..., 1]) + MIN_SIGMA


def probit_preference_loss(mu_chosen, sigma_chosen, mu_rejected, sigma_rejected) -> torch.Tensor:
    """-log P(chosen preferred) = -log Phi((mu_c - mu_r) / sqrt(sigma_c^2 + sigma_r^2)), averaged over pairs."""
    z = (mu_chosen - mu_rejected) / torch.sqrt(sigma_chosen**2 + sigma_rejected**2)
    return -torch.special.log_ndtr(z).mean()


def train_mean_variance_model(model, tokenizer, pairs, settings: PreferenceSettings) -> PreferenceResult:
    """Train a two-output sequence classifier as a mean-and-variance preference model (AdamW, linear decay)."""
    pairs = check_pairs(pairs)
    if not pairs:
        raise ValueError("pairs is empty: expected at least one preference pair")
    if int(model.config.num_labels) != 2:
        raise ValueError(f"a mean-and-variance model needs num_labels=2 (mu, sigma); this one has "
                         f"{model.config.num_labels}")
    if tokenizer.pad_token_id is None:
        raise ValueError("the tokenizer has no pad token: set tokenizer.pad_token before training")
    chosen = encode_texts(tokenizer, [p["prompt"] + p["chosen"] for p in pairs], settings.max_length)
    rejected = encode_texts(tokenizer, [p["prompt"] + p["rejected"] for p in pairs], settings.max_length)
    chosen_precision = training_precision(settings.dtype)
    device = torch.device("cuda" if chosen_precision.device_type == "cuda" else "cpu")
    model.to(device).train()
    generator = torch.Generator().manual_seed(settings.seed)
    per_epoch = -(-len(pairs) // settings.batch_size)
    total = settings.max_steps if settings.max_steps > 0 else int(np.ceil(settings.epochs * per_epoch))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    history, step, start = [], 0, time.perf_counter()
    with progress(total=total, desc="mean-and-variance model", unit="step") as bar:
        while step < total:
            for batch in torch.randperm(len(pairs), generator=generator).split(settings.batch_size):
                if step >= total:
                    break
                rows = batch.tolist()
                ids, mask = pad_batch(chosen + rejected, rows + [len(pairs) + i for i in rows], tokenizer.pad_token_id)
                with chosen_precision.autocast():
                    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
                mu, sigma = mean_and_sigma(logits.float())
                mu_c, mu_r = mu.chunk(2)
                sigma_c, sigma_r = sigma.chunk(2)
                loss = probit_preference_loss(mu_c, sigma_c, mu_r, sigma_r)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                bar.update(1)
                if step == 1 or step % settings.logging_steps == 0 or step == total:
                    history.append({"step": step, "epoch": step / per_epoch, "loss": loss.item(),
                                    "accuracy": float((mu_c > mu_r).float().mean()),
                                    "sigma": float(sigma.mean())})
    model.eval()
    return PreferenceResult(model, tokenizer, history, time.perf_counter() - start, len(pairs), settings)


def score_mean_variance(model, tokenizer, texts, *, batch_size: int = 16, max_length: int = 256
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The mean-and-variance model's (mu, sigma) per text."""
    outputs = torch.from_numpy(text_outputs(model, tokenizer, texts, batch_size, max_length))
    mu, sigma = mean_and_sigma(outputs)
    return mu.numpy(), sigma.numpy()
