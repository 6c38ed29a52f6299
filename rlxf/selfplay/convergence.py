"""Do the two bots converge? Neutral-rating streaks, distances between LoRA weight updates, text diversity.

Weights: a LoRA adapter changes a layer by ΔW = scale * B @ A. The factors A and B are not unique (B M^-1 and
M A give the same ΔW for any invertible r x r matrix M), so distances between raw factors measure the
parameterisation, not the model; every weight distance here is taken on ΔW.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from rlxf.lm.models import mean_pool


def neutral_streak(ratings: Sequence[float], low: float = 45.0, high: float = 55.0, n: int = 5) -> dict:
    """Runs of neutral ratings (low <= r <= high).

    Returns `longest` (the longest run), `first_complete` (the index of the rating that completes the first run
    of `n`, or None: a stop criterion) and `neutral` (one bool per rating).
    """
    if n < 1:
        raise ValueError(f"neutral_streak: n must be >= 1, got {n}")
    if low > high:
        raise ValueError(f"neutral_streak: low ({low}) must not exceed high ({high})")
    neutral, run, longest, first_complete = [], 0, 0, None
    for index, rating in enumerate(ratings):
        try:
            value = float(rating)
        except (TypeError, ValueError) as error:
            raise ValueError(f"neutral_streak: ratings[{index}] is not a number: {rating!r}") from error
        if not math.isfinite(value):
            raise ValueError(f"neutral_streak: ratings[{index}] is not finite: {rating!r}")
        is_neutral = low <= value <= high
        neutral.append(is_neutral)
        run = run + 1 if is_neutral else 0
        longest = max(longest, run)
        if first_complete is None and run >= n:
            first_complete = index
    return {"longest": longest, "first_complete": first_complete, "neutral": neutral}


# ------------------------------------------------------------------------------------------------ LoRA ΔW


def _layer_name(module_name: str) -> str:
    """The layer's name in the base model (without peft's `base_model.model.` prefix)."""
    prefix = "base_model.model."
    return module_name[len(prefix):] if module_name.startswith(prefix) else module_name


def lora_delta_weights(peft_model: torch.nn.Module, adapter_name: str) -> dict[str, torch.Tensor]:
    """ΔW = scale * B @ A of every layer adapter `adapter_name` adapts -> {layer name: float32 tensor, detached}.

    Read from peft's LoraLayer: `lora_A[adapter].weight` [r, in], `lora_B[adapter].weight` [out, r] and
    `scaling[adapter]` (alpha / r, or alpha / sqrt(r) with rsLoRA); shaped like the base layer's weight
    (transposed for `fan_in_fan_out` layers such as GPT-2's Conv1D). Embedding adapters use
    `lora_embedding_A/B`. One dense matrix per layer: memory of the adapted layers' weights in float32.
    """
    from peft.tuners.lora import LoraLayer

    deltas: dict[str, torch.Tensor] = {}
    known: set[str] = set()
    for name, module in peft_model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        known |= set(module.lora_A) | set(module.lora_embedding_A)
        if adapter_name in getattr(module, "lora_variant", {}):
            raise ValueError(f"layer {name}: adapter {adapter_name!r} is a LoRA variant (e.g. DoRA) whose weight "
                             "change is not scale * B @ A")
        scale = module.scaling.get(adapter_name)
        with torch.no_grad():
            if adapter_name in module.lora_A:
                lora_a, lora_b = module.lora_A[adapter_name].weight, module.lora_B[adapter_name].weight
                if lora_a.ndim != 2:
                    raise ValueError(f"layer {name}: only Linear LoRA layers are supported, got lora_A weight of "
                                     f"shape {tuple(lora_a.shape)}")
                delta = scale * (lora_b.float() @ lora_a.float())
                if getattr(module, "fan_in_fan_out", False):
                    delta = delta.T
            elif adapter_name in module.lora_embedding_A:
                lora_a, lora_b = module.lora_embedding_A[adapter_name], module.lora_embedding_B[adapter_name]
                delta = (scale * (lora_b.float() @ lora_a.float())).T  # the embedding table is [vocab, dim]
            else:
                continue
        deltas[_layer_name(name)] = delta.detach()
    if not deltas:
        raise ValueError(f"adapter {adapter_name!r} adapts no LoRA layer of this model; adapters found: "
                         f"{sorted(known) or 'none'}")
    return deltas


def _pair_row(layer: str, norm_a: float, norm_b: float, distance: float, dot: float) -> dict:
    mean_norm = (norm_a + norm_b) / 2
    return {
        "layer": layer,
        "norm_a": norm_a,
        "norm_b": norm_b,
        "frobenius": distance,
        # Both norms zero means both updates are zero: identical, distance 0.
        "relative": distance / mean_norm if mean_norm > 0 else 0.0,
        # The angle to a zero update is undefined.
        "cosine": dot / (norm_a * norm_b) if norm_a > 0 and norm_b > 0 else float("nan"),
    }


def delta_distance(deltas_a: dict[str, torch.Tensor], deltas_b: dict[str, torch.Tensor]) -> pd.DataFrame:
    """Per-layer distances between two adapters' ΔW, plus a `total` row over all layers together.

    Columns: `norm_a`, `norm_b` (Frobenius norms), `frobenius` (||ΔA - ΔB||_F), `relative`
    (||ΔA - ΔB|| / ((||ΔA|| + ||ΔB||) / 2): 0 identical, sqrt(2) orthogonal updates of equal norm, 2 opposite
    ones; 0 when both are zero), `cosine` (<ΔA, ΔB> / (||ΔA|| ||ΔB||); NaN when either is zero). The total row
    treats all layers as one long vector. Symmetric in a and b except that the norm columns swap.
    """
    if set(deltas_a) != set(deltas_b):
        only_a, only_b = sorted(set(deltas_a) - set(deltas_b)), sorted(set(deltas_b) - set(deltas_a))
        raise ValueError(f"the adapters adapt different layers: only in a: {only_a[:5]}, only in b: {only_b[:5]}")
    if not deltas_a:
        raise ValueError("no layers to compare: both delta dicts are empty")
    rows, squares = [], np.zeros(4)  # sums of ||a||^2, ||b||^2, ||a - b||^2, <a, b>
    for layer in sorted(deltas_a):
        a, b = deltas_a[layer].detach().float(), deltas_b[layer].detach().float().to(deltas_a[layer].device)
        if a.shape != b.shape:
            raise ValueError(f"layer {layer}: ΔW shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
        parts = np.array([float((a * a).sum()), float((b * b).sum()), float(((a - b) ** 2).sum()),
                          float((a * b).sum())])
        squares += parts
        rows.append(_pair_row(layer, math.sqrt(parts[0]), math.sqrt(parts[1]), math.sqrt(parts[2]), parts[3]))
    rows.append(_pair_row("total", math.sqrt(squares[0]), math.sqrt(squares[1]), math.sqrt(squares[2]), squares[3]))
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------ texts


def _as_matrix(embeddings, what: str) -> np.ndarray:
    array = embeddings.detach().cpu().float().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(
        embeddings, dtype=float)
    if array.ndim != 2 or len(array) == 0:
        raise ValueError(f"{what} must be a non-empty 2-D array [texts, dim], got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds NaN or inf values")
    return array


def centroid_distance(emb_a, emb_b, metric: str = "euclidean") -> float:
    """Distance between the mean embeddings of two sets of texts: "euclidean" or "cosine" (1 - cosine similarity)."""
    a, b = _as_matrix(emb_a, "emb_a").mean(axis=0), _as_matrix(emb_b, "emb_b").mean(axis=0)
    if a.shape != b.shape:
        raise ValueError(f"emb_a and emb_b differ in dimension: {a.shape[0]} vs {b.shape[0]}")
    if metric == "euclidean":
        return float(np.linalg.norm(a - b))
    if metric == "cosine":
        norms = np.linalg.norm(a) * np.linalg.norm(b)
        if norms == 0:
            raise ValueError("cosine distance is undefined for a zero centroid")
        return float(1.0 - a @ b / norms)
    raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")


def distinct_n(texts: Sequence[str], n: int) -> float:
    """Distinct-n (Li et al. 2016): unique word n-grams / all word n-grams over the texts (lower-cased words).

    1.0 means no n-gram repeats; values near 0 flag degenerate, repetitive text. 0.0 when there are no n-grams.
    """
    if n < 1:
        raise ValueError(f"distinct_n: n must be >= 1, got {n}")
    if isinstance(texts, str):
        raise ValueError("distinct_n: texts must be a list of strings, got a single str")
    grams: Counter = Counter()
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ValueError(f"distinct_n: texts[{index}] must be a str, got {type(text).__name__}")
        words = text.lower().split()
        grams.update(tuple(words[i: i + n]) for i in range(len(words) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def snapshot_distances(model, snapshots: dict[int, str | Path], names: Sequence[str]) -> pd.DataFrame:
    """ΔW distances between two adapters at every snapshot of a run, and how far each moved from its first one.

    `model`: a PeftModel holding adapters `names` (their weights are overwritten with each snapshot's);
    `snapshots`: {round: directory holding `<name>/adapter_model.safetensors`} (`rlxf.selfplay.list_snapshots`).
    Returns `delta_distance`'s rows with a `round` column; on the `total` rows `moved_a` / `moved_b` hold
    ||ΔW(round) - ΔW(first round)||_F of each adapter (NaN on per-layer rows).
    """
    from rlxf.lm.adapters import load_adapter_weights

    names = list(names)
    if len(names) != 2:
        raise ValueError(f"snapshot_distances compares two adapters, got names {names!r}")
    if not snapshots:
        raise ValueError("no snapshots to compare: the run saved none (SelfPlaySettings.snapshot_every=0?)")
    first: dict[str, dict[str, torch.Tensor]] = {}
    tables = []
    for round_index, path in sorted(snapshots.items()):
        for name in names:
            load_adapter_weights(model, name, Path(path) / name)
        deltas = {name: lora_delta_weights(model, name) for name in names}
        table = delta_distance(deltas[names[0]], deltas[names[1]])
        table.insert(0, "round", round_index)
        for key, name in zip(("moved_a", "moved_b"), names, strict=True):
            start = first.setdefault(name, deltas[name])
            moved = math.sqrt(sum(float(((deltas[name][layer] - start[layer]) ** 2).sum()) for layer in start))
            table[key] = np.where(table["layer"] == "total", moved, np.nan)
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


def run_convergence(model, run_dir: str | Path, names: Sequence[str], *, streak_n: int, low: float = 45.0,
                    high: float = 55.0) -> dict:
    """One self-play run (`SelfPlayTrainer`'s output_dir) by the two criteria, as numbers to compare across seeds.

    `neutral streak reached` / `longest neutral run`: `neutral_streak` over all ratings in order (transcripts);
    `rating slope per round`: per bot, the least-squares slope of its mean rating received per round (rating points
    per round; NaN for a run of one round); `ΔW relative first` / `last` / `change`: the total relative ΔW distance
    between the two bots (`delta_distance`) at the first and the last adapter snapshot, and last minus first
    (negative: the weight changes moved closer). `model` is a PeftModel holding adapters `names`; their weights are
    overwritten with the snapshots'.
    """
    from rlxf.analysis.stats import least_squares_slope
    from rlxf.selfplay.env import read_transcripts
    from rlxf.selfplay.trainer import list_snapshots, read_history

    run_dir, names = Path(run_dir), list(names)
    history = read_history(run_dir)
    if not history:
        raise ValueError(f"{run_dir / 'history.jsonl'} holds no rounds: the run never finished one")
    ratings = [row["rating_by_other"] for transcript in read_transcripts(run_dir / "transcripts.jsonl")
               for row in transcript]
    streak = neutral_streak(ratings, low, high, streak_n)
    rounds = [row["round"] for row in history]
    slopes = {name: least_squares_slope(rounds, [row[f"{name}/rating_received"] for row in history])
              if len(rounds) > 1 else float("nan") for name in names}
    snapshots = list_snapshots(run_dir)
    if len(snapshots) < 2:
        raise ValueError(f"{run_dir / 'snapshots'} holds {len(snapshots)} adapter snapshot(s); the ΔW change needs "
                         "the first and the last (SelfPlaySettings.snapshot_every >= 1)")
    first, last = min(snapshots), max(snapshots)
    distances = snapshot_distances(model, {first: snapshots[first], last: snapshots[last]}, names)
    relative = distances[distances["layer"] == "total"].set_index("round")["relative"]
    return {"rounds": len(history), "ratings": len(ratings),
            "neutral streak reached": streak["first_complete"] is not None,
            "longest neutral run": streak["longest"],
            "rating slope per round": slopes,
            "snapshot rounds": [first, last],
            "ΔW relative first": float(relative[first]), "ΔW relative last": float(relative[last]),
            "ΔW relative change": float(relative[last] - relative[first])}


@torch.no_grad()
def embed_texts(encoder, tokenizer, texts: Sequence[str], *, batch_size: int = 32, max_length: int = 128) -> np.ndarray:
    """Sentence embeddings: the mean of the encoder's last hidden states over real tokens, L2-normalised.

    This is all-MiniLM-L6-v2's own pooling (sentence-transformers). `encoder`: a transformers encoder, or a
    classifier built on one (its `base_model` is used).
    """
    if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
        raise ValueError("embed_texts: texts must be a list of strings")
    if not texts:
        raise ValueError("embed_texts: no texts to embed")
    body = getattr(encoder, "base_model", encoder)
    device = next(body.parameters()).device
    body.eval()
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                          max_length=max_length, return_tensors="pt").to(device)
        rows.append(mean_pool(body(**batch).last_hidden_state, batch["attention_mask"]).cpu().numpy())
    return np.concatenate(rows)


def pca_2d(embeddings, *, explained: bool = False):
    """The first two principal components of the rows (centred, via SVD) -> [n, 2].

    `explained=True`: (that array, the share of the rows' total variance each of the two components explains).
    """
    array = _as_matrix(embeddings, "embeddings")
    centred = array - array.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ components[:2].T
    projected = projected if projected.shape[1] == 2 else np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    if not explained:
        return projected
    variance = singular ** 2
    shares = variance[:2] / variance.sum() if variance.sum() > 0 else np.zeros(min(2, variance.size))
    return projected, np.pad(shares, (0, 2 - shares.size))
