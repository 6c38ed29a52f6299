"""Held-out reports of a classifier's probabilities: accuracy, per-class and macro precision/recall/F1, ROC-AUC and
the confusion matrix; the majority-class and TF-IDF + logistic-regression baselines; calibration (reliability, ECE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import metrics as skm
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from rlxf.rewards.base import check_texts
from rlxf.rewards.classifiers import check_labels


def _check_scores(y_true: Sequence, proba) -> tuple[np.ndarray, np.ndarray]:
    """y_true as ints and proba as (n, K): a 1-d proba is P(class 1) of a binary problem."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim == 1:
        proba = np.stack([1.0 - proba, proba], axis=1)
    if proba.ndim != 2 or proba.shape[1] < 2:
        raise ValueError(f"proba must be shape (n,) or (n, n_classes >= 2), got {proba.shape}")
    if not np.isfinite(proba).all() or (proba < 0).any() or (proba > 1).any():
        raise ValueError("proba must hold probabilities in [0, 1]")
    y = check_labels(y_true, len(proba), proba.shape[1], "y_true")
    if len(y) == 0:
        raise ValueError("y_true is empty: expected at least one example")
    return y, proba


def classification_report(y_true: Sequence, proba, labels: Sequence[str] | None = None) -> dict:
    """Accuracy, per-class and macro precision/recall/F1, ROC-AUC and the confusion matrix (rows true, cols predicted).

    `proba` is (n, n_classes) or, for two classes, P(class 1) of shape (n,); predictions are the argmax.
    ROC-AUC is NaN when y_true holds a single class. Zero-division precision/recall count as 0.
    """
    y, proba = _check_scores(y_true, proba)
    k = proba.shape[1]
    names = [str(i) for i in range(k)] if labels is None else [str(name) for name in labels]
    if len(names) != k:
        raise ValueError(f"labels has {len(names)} names, expected {k} (one per class)")
    predicted = proba.argmax(axis=1)
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        y, predicted, labels=list(range(k)), zero_division=0
    )
    if len(np.unique(y)) < 2:
        auc = math.nan
    elif k == 2:
        auc = float(skm.roc_auc_score(y, proba[:, 1]))
    else:
        auc = float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=list(range(k))))
    return {
        "n": int(len(y)),
        "accuracy": float((predicted == y).mean()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, support, strict=True)
        },
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "roc_auc": auc,
        "confusion_matrix": skm.confusion_matrix(y, predicted, labels=list(range(k))).tolist(),
        "labels": names,
    }


def baselines(
    train_texts: Sequence[str],
    train_labels: Sequence,
    test_texts: Sequence[str],
    test_labels: Sequence,
    *,
    labels: Sequence[str] | None = None,
    class_weight: str | None = "balanced",
    seed: int = 0,
) -> dict:
    """Reports (as `classification_report`): a majority-class baseline, TF-IDF (1-2 grams) + logistic regression.

    The majority baseline predicts the training class frequencies for every text, so its ROC-AUC is 0.5.
    """
    train_texts, test_texts = check_texts(train_texts, "train_texts"), check_texts(test_texts, "test_texts")
    if labels is not None:
        k = len(labels)
    else:
        observed = np.concatenate([np.asarray(train_labels, dtype=float), np.asarray(test_labels, dtype=float)])
        observed = observed[np.isfinite(observed)]
        k = max(2, int(observed.max()) + 1) if observed.size else 2
    y_train = check_labels(train_labels, len(train_texts), k, "train_labels")
    y_test = check_labels(test_labels, len(test_texts), k, "test_labels")
    if len(np.unique(y_train)) < 2:
        raise ValueError("train_labels hold a single class: a classifier baseline needs at least two")
    frequencies = np.bincount(y_train, minlength=k) / len(y_train)
    majority = np.tile(frequencies, (len(y_test), 1))
    tfidf = tfidf_logreg_proba(train_texts, y_train, test_texts, k, class_weight=class_weight, seed=seed)
    return {
        "majority": classification_report(y_test, majority, labels=labels),
        "tfidf_logreg": classification_report(y_test, tfidf, labels=labels),
    }


def tfidf_logreg_proba(train_texts: Sequence[str], train_labels: np.ndarray, test_texts: Sequence[str],
                       num_labels: int, *, class_weight: str | None = "balanced", seed: int = 0) -> np.ndarray:
    """The TF-IDF (1-2 grams) + logistic-regression baseline's test probabilities, shape (n_test, num_labels)."""
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
    regression = LogisticRegression(max_iter=2000, class_weight=class_weight, random_state=seed)
    regression.fit(vectorizer.fit_transform(list(train_texts)), train_labels)
    proba = np.zeros((len(test_texts), num_labels))
    proba[:, regression.classes_] = regression.predict_proba(vectorizer.transform(list(test_texts)))
    return proba


@dataclass
class Calibration:
    """A reliability table and its expected calibration error."""

    table: pd.DataFrame
    """one row per equal-width bin: bin_lower, bin_upper, mean_predicted, observed_frequency, count"""
    ece: float
    """expected calibration error: sum over bins of count/n * |mean_predicted - observed_frequency|"""


def calibration(y_true: Sequence, proba, n_bins: int = 10) -> Calibration:
    """Reliability of P(class 1) for a binary problem, in `n_bins` equal-width bins (the last one includes 1.0)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    y, proba = _check_scores(y_true, proba)
    if proba.shape[1] != 2:
        raise ValueError(f"calibration is for binary problems; proba has {proba.shape[1]} classes")
    p = proba[:, 1]
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(p, edges[1:-1], right=False), 0, n_bins - 1)
    rows = []
    for b in range(n_bins):
        inside = bins == b
        count = int(inside.sum())
        rows.append({
            "bin_lower": float(edges[b]),
            "bin_upper": float(edges[b + 1]),
            "mean_predicted": float(p[inside].mean()) if count else math.nan,
            "observed_frequency": float(y[inside].mean()) if count else math.nan,
            "count": count,
        })
    table = pd.DataFrame(rows)
    filled = table[table["count"] > 0]
    ece = float((filled["count"] / len(y) * (filled["mean_predicted"] - filled["observed_frequency"]).abs()).sum())
    return Calibration(table=table, ece=ece)
