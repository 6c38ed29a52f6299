"""A linear text classifier: TF-IDF word n-grams -> logistic regression, its strength chosen by cross-validation.

It trains in seconds on all the training texts, and on every task of the studies it is at least as good as a
fine-tuned MiniLM at the demo's sizes (benchmarks/reward_baselines.py), so it is the classifier reward where that
holds. It quacks like a transformers sequence classifier where the rewards need it (`config.num_labels`,
`config.label2id`, `eval()`): `rlxf.rewards.classifiers.predict_logits`, `ClassifierReward`, `ExperienceReward` and
`VerdictSentiment` take it with `tokenizer=None`, and `load_saved_classifier` loads it from its directory.

The regression is fitted without class weights: its probabilities are then estimates of the real class frequencies
(a reward reads P(MET), not a balanced-class score) and the argmax beats the majority class whenever the model
carries any signal. Balanced weights move the decision threshold towards the minority class; a weak model then
predicts the minority for most texts and its accuracy falls below the majority baseline (the MiniLM's MONA
random-split "collapse": MET predicted for 4.8 % of rows with 64.6 % MET).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from rlxf.infra.checkpoint import atomic_dir
from rlxf.rewards.base import check_texts
from rlxf.rewards.fields import FieldOneHot, field_pattern

MODEL_FILE, RECORD_FILE = "linear.joblib", "linear.json"


@dataclass
class LinearSettings:
    """How to fit a `LinearTextClassifier`."""

    ngram_max: int = 2
    """word n-grams 1..ngram_max"""
    min_df: int = 1
    """an n-gram is a feature when it occurs in at least this many training texts"""
    max_features: int | None = 300_000
    """keep the most frequent n-grams only (None: all)"""
    c_grid: tuple[float, ...] = (0.3, 1.0, 3.0, 10.0)
    """inverse L2 strengths tried; the one with the best cross-validated log-loss on the training texts is used"""
    cv_folds: int = 3
    """folds of that cross-validation (grouped when `fit` gets groups: e.g. arrangements, tweet authors)"""
    seed: int = 0
    """seed of the folds"""
    fields: tuple[str, ...] = ()
    """named fields of the text (`Type: ...`, `Arrangement: ...`) also given as one-hot features
    (`rlxf.rewards.fields`); () for none"""

    def __post_init__(self) -> None:
        if self.ngram_max < 1 or self.min_df < 1:
            raise ValueError(f"LinearSettings: ngram_max and min_df must be >= 1, got {self.ngram_max}, {self.min_df}")
        if not self.c_grid or any(not c > 0 for c in self.c_grid):
            raise ValueError(f"LinearSettings.c_grid must hold positive numbers, got {self.c_grid}")
        if self.cv_folds < 2:
            raise ValueError(f"LinearSettings.cv_folds must be >= 2, got {self.cv_folds}")
        self.c_grid = tuple(float(c) for c in self.c_grid)
        self.fields = tuple(self.fields)
        for name in self.fields:
            field_pattern(name)


@dataclass
class LinearTextClassifier:
    """TF-IDF (sublinear tf, word 1..n-grams) + multinomial logistic regression; see the module docstring."""

    label_names: tuple[str, ...]
    settings: LinearSettings = field(default_factory=LinearSettings)
    pipeline: Pipeline | None = None
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    """mean held-out log-loss of each C tried (str(C) -> value)"""
    seconds: float = 0.0

    def __post_init__(self) -> None:
        self.label_names = tuple(str(name) for name in self.label_names)
        if len(self.label_names) < 2:
            raise ValueError(f"LinearTextClassifier needs >= 2 label names, got {self.label_names}")
        self.config = SimpleNamespace(
            num_labels=len(self.label_names),
            label2id={name: i for i, name in enumerate(self.label_names)},
            id2label=dict(enumerate(self.label_names)),
        )

    def _pipeline(self, c: float) -> Pipeline:
        s = self.settings
        tfidf = TfidfVectorizer(ngram_range=(1, s.ngram_max), sublinear_tf=True, min_df=s.min_df,
                                max_features=s.max_features)
        if s.fields:
            tfidf = FeatureUnion([("tfidf", tfidf), ("fields", FieldOneHot(s.fields))])
        return Pipeline([("tfidf", tfidf), ("regression", LogisticRegression(C=c, max_iter=3000))])

    def fit(self, texts: Sequence[str], labels: Sequence, *, groups: Sequence | None = None) -> LinearTextClassifier:
        """Choose C by (grouped) cross-validation on these texts, then refit on all of them."""
        from rlxf.rewards.classifiers import check_labels  # classifiers imports this module

        texts = check_texts(texts, "texts")
        y = check_labels(labels, len(texts), len(self.label_names), "labels")
        if len(np.unique(y)) < 2:
            raise ValueError("labels hold a single class: a classifier needs at least two")
        started = time.perf_counter()
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(texts):
                raise ValueError(f"groups has {len(groups)} entries, expected {len(texts)}: one per text")
            n_splits = min(self.settings.cv_folds, len(np.unique(groups)))
            splitter = GroupKFold(n_splits=max(n_splits, 2))
        else:
            n_splits = min(self.settings.cv_folds, int(np.bincount(y)[np.bincount(y) > 0].min()))
            splitter = StratifiedKFold(n_splits=max(n_splits, 2), shuffle=True, random_state=self.settings.seed)
        if n_splits < 2:
            raise ValueError(f"{len(texts)} training texts allow no {self.settings.cv_folds}-fold cross-validation "
                             "(a class or the groups occur only once): give more texts")
        # a fold whose training part holds a single class cannot fit a regression; it is skipped
        folds = [(a, b) for a, b in splitter.split(texts, y, groups) if len(np.unique(y[a])) > 1]
        if not folds:
            raise ValueError("every cross-validation fold's training part holds a single class: give more texts")
        array = np.asarray(texts, dtype=object)
        self.cv_log_loss = {}
        for c in self.settings.c_grid:
            losses = []
            for train_index, test_index in folds:
                pipeline = self._pipeline(c).fit(array[train_index], y[train_index])
                proba = np.full((len(test_index), len(self.label_names)), 1e-12)
                proba[:, pipeline.classes_] = np.clip(pipeline.predict_proba(array[test_index]), 1e-12, 1)
                losses.append(-np.log(proba[np.arange(len(test_index)), y[test_index]]).mean())
            self.cv_log_loss[str(c)] = float(np.mean(losses))
        self.pipeline = self._pipeline(self.best_c).fit(array, y)
        self.seconds = time.perf_counter() - started
        return self

    @property
    def best_c(self) -> float:
        if not self.cv_log_loss:
            raise ValueError("LinearTextClassifier is not fitted: call fit() first")
        return float(min(self.cv_log_loss, key=self.cv_log_loss.get))

    def predict_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Log-probabilities, shape (n, num_labels): softmax of them gives `predict_proba` exactly."""
        if self.pipeline is None:
            raise ValueError("LinearTextClassifier is not fitted: call fit() first")
        texts = check_texts(texts, "texts")
        out = np.full((len(texts), len(self.label_names)), -30.0, dtype=np.float32)  # a class never seen in training
        if texts:
            out[:, self.pipeline.classes_] = np.log(np.clip(self.pipeline.predict_proba(texts), 1e-13, 1.0))
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        logits = self.predict_logits(texts).astype(np.float64)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    # the two methods rewards call on a torch model
    def eval(self) -> LinearTextClassifier:
        return self

    def train(self, mode: bool = True) -> LinearTextClassifier:
        return self

    def save(self, directory: str | Path) -> Path:
        """Write the fitted pipeline (joblib: load only directories you wrote) and a JSON record, atomically."""
        if self.pipeline is None:
            raise ValueError("LinearTextClassifier is not fitted: nothing to save")
        directory = Path(directory)
        record = {"label_names": list(self.label_names), "settings": asdict(self.settings),
                  "cv_log_loss": self.cv_log_loss, "best_c": self.best_c, "seconds": self.seconds}
        with atomic_dir(directory) as tmp:
            joblib.dump(self.pipeline, Path(tmp) / MODEL_FILE)
            (Path(tmp) / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> LinearTextClassifier:
        directory = Path(directory)
        if not is_linear_dir(directory):
            raise FileNotFoundError(f"{directory}: no saved linear classifier here (expected {MODEL_FILE}, "
                                    f"{RECORD_FILE})")
        record = json.loads((directory / RECORD_FILE).read_text())
        settings = record["settings"]
        settings["c_grid"] = tuple(settings["c_grid"])
        settings["fields"] = tuple(settings.get("fields", ()))
        model = cls(tuple(record["label_names"]), LinearSettings(**settings), joblib.load(directory / MODEL_FILE),
                    record["cv_log_loss"], record["seconds"])
        return model

    def __repr__(self) -> str:
        c = f"C={self.best_c:g}" if self.cv_log_loss else "not fitted"
        fields = f", fields {list(self.settings.fields)}" if self.settings.fields else ""
        return f"LinearTextClassifier(labels={self.label_names}, 1..{self.settings.ngram_max}-grams{fields}, {c})"


def is_linear_dir(directory: str | Path) -> bool:
    """Whether `directory` holds a saved `LinearTextClassifier`."""
    directory = Path(directory)
    return (directory / MODEL_FILE).is_file() and (directory / RECORD_FILE).is_file()
