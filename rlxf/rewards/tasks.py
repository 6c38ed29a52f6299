"""The studies' text classifiers (MONA experience, party, sentiment): their data, and training cached on disk.

Notebook 02 needs the party classifier to score the party bots and notebook 03 studies it; whichever runs first
trains it through `fit_classifier`, the other loads it. The cache key is a fingerprint of the task's texts and
labels, the base model and the settings, so a changed parameter retrains instead of loading a stale model.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from rlxf.lm.models import load_classifier
from rlxf.rewards.classifiers import (
    ClassifierSettings,
    load_saved_classifier,
    predict_proba,
    save_classifier,
    train_classifier,
)
from rlxf.rewards.linear import LinearSettings, LinearTextClassifier, is_linear_dir
from rlxf.rewards.reports import classification_report

PARTIES = ("Democrat", "Republican")
MONA_LABELS = ("Non-MET", "MET")
SENTIMENT_LABELS = ("negative", "positive")


@dataclass
class ClassifierTask:
    """Texts and integer labels for one classifier, split into train and test."""

    name: str
    label_names: tuple[str, ...]
    train_texts: list[str]
    train_labels: np.ndarray
    test_texts: list[str]
    test_labels: np.ndarray
    train_groups: np.ndarray | None = None
    """a group per training text (arrangement, tweet author) that cross-validation keeps within one fold"""

    def fingerprint(self) -> str:
        digest = hashlib.sha256(self.name.encode())
        for texts, labels in ((self.train_texts, self.train_labels), (self.test_texts, self.test_labels)):
            digest.update("\x00".join(texts).encode())
            digest.update(np.asarray(labels, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]


def _require(table: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} table lacks the column(s) {missing}; it has {list(table.columns)}")


def _subsample(table: pd.DataFrame, n: int | None, seed: int, by: str) -> pd.DataFrame:
    """At most n rows, stratified by `by` so a subsample keeps the class balance (n None or <= 0: all rows)."""
    if not n or n <= 0 or n >= len(table):
        return table
    frac = n / len(table)
    return table.groupby(by, group_keys=False).sample(frac=frac, random_state=seed).sort_index()


MONA_TYPE_PREFIX = "Type: {condition_type}. "


def mona_texts(rows: pd.DataFrame, with_type: bool) -> list[str]:
    """The rows' model text, with `MONA_TYPE_PREFIX` (the condition type) in front when `with_type`."""
    if not with_type:
        return rows.text.tolist()
    return [MONA_TYPE_PREFIX.format(condition_type=kind) + text
            for kind, text in zip(rows.condition_type, rows.text, strict=True)]


def mona_task(mona: pd.DataFrame, *, split: str = "split_arrangement", max_train: int | None = None,
              seed: int = 0, with_type: bool = False) -> ClassifierTask:
    """MET (1) vs Non-MET (0) from the hydrated MONA table; not-assessed rows are left out.

    `with_type`: the text starts with the condition type (prior action, structural benchmark, ...): the strongest
    single predictor of MET, which a reward can be given by the policy's prompt instead of guessing it from the text.
    """
    _require(mona, ("text", "label", "arr_id", split) + (("condition_type",) if with_type else ()), "MONA")
    labelled = mona[mona.label.notna()]
    train = _subsample(labelled[labelled[split] == "train"], max_train, seed, "label")
    test = labelled[labelled[split] == "test"]
    name = f"mona-{split}" + ("-typed" if with_type else "")
    return ClassifierTask(name, MONA_LABELS, mona_texts(train, with_type), train.label.to_numpy(np.int64),
                          mona_texts(test, with_type), test.label.to_numpy(np.int64), train.arr_id.to_numpy())


def handle_split(handles: pd.Series, seed: int, test_fraction: float = 0.2) -> np.ndarray:
    """'train'/'test' per tweet with a seeded `test_fraction` of the authors (`handle`) in test."""
    authors = np.array(sorted(handles.unique()), dtype=object)
    test_authors = authors[np.random.default_rng(seed).permutation(len(authors))[: round(test_fraction * len(authors))]]
    return np.where(handles.isin(set(test_authors)), "test", "train").astype(object)


def party_task(tweets: pd.DataFrame, *, max_train: int | None = None, max_test: int | None = None,
               seed: int = 0, by_handle: bool = False) -> ClassifierTask:
    """Democrat (0) vs Republican (1) from the hydrated tweets' train and test splits.

    `by_handle`: a 20 % of the members (`handle`) are the test set instead (their tweets of every split), the rest
    train, so no account is on both sides: what is learned is party language, not memorised accounts.
    """
    _require(tweets, ("text", "party", "split", "handle"), "political")
    unknown = sorted(set(tweets.party) - set(PARTIES))
    if unknown:
        raise ValueError(f"political table: unknown party value(s) {unknown}; expected {PARTIES}")
    split = pd.Series(handle_split(tweets.handle, seed), index=tweets.index) if by_handle else tweets.split
    train = _subsample(tweets[split == "train"], max_train, seed, "party")
    test = _subsample(tweets[split == "test"], max_test, seed, "party")
    index = {p: i for i, p in enumerate(PARTIES)}
    return ClassifierTask("party-by-handle" if by_handle else "party", PARTIES, train.text.tolist(),
                          train.party.map(index).to_numpy(np.int64), test.text.tolist(),
                          test.party.map(index).to_numpy(np.int64), train.handle.to_numpy())


def sentiment_task(imdb: pd.DataFrame, *, max_train: int | None = None, max_test: int | None = None,
                   seed: int = 0) -> ClassifierTask:
    """Positive (1) vs negative (0) IMDB reviews; `<br />` tags become spaces."""
    _require(imdb, ("text", "label", "split"), "IMDB")
    imdb = imdb.assign(text=imdb.text.str.replace("<br />", " ", regex=False))
    train = _subsample(imdb[imdb.split == "train"], max_train, seed, "label")
    test = _subsample(imdb[imdb.split == "test"], max_test, seed, "label")
    return ClassifierTask("sentiment", SENTIMENT_LABELS, train.text.tolist(), train.label.to_numpy(np.int64),
                          test.text.tolist(), test.label.to_numpy(np.int64))


@dataclass
class FittedClassifier:
    """A trained classifier with its held-out report; `loaded` says whether it came from the cache."""

    model: object
    tokenizer: object
    report: dict
    test_proba: np.ndarray
    history: list[dict]
    seconds: float
    loaded: bool
    directory: Path
    extra: dict = field(default_factory=dict)


def fit_classifier(task: ClassifierTask, model_name: str, settings: ClassifierSettings, directory: str | Path, *,
                   class_weights: str | None = "balanced", device=None) -> FittedClassifier:
    """Train `model_name` with a fresh head on `task` and save it to `directory`; load it if already trained there."""
    directory = Path(directory)
    key = {"task": task.fingerprint(), "model": model_name, "class_weights": class_weights,
           "settings": {k: v for k, v in asdict(settings).items() if k not in ("output_dir", "report_to")}}
    record_path = directory / "fit.json"
    if record_path.is_file() and (directory / "test_proba.npy").is_file():
        record = json.loads(record_path.read_text())
        if record.get("key") == key:
            model, tokenizer = load_saved_classifier(directory, device=device)
            print(f"{task.name}: loaded the classifier trained earlier from {directory}")
            return FittedClassifier(model, tokenizer, record["report"], np.load(directory / "test_proba.npy"),
                                    record["history"], record["seconds"], True, directory, record.get("extra", {}))
    if settings.report_to != "none" and settings.output_dir is None:  # the tracker's files outlive the training run
        settings = replace(settings, output_dir=str(directory.parent / "runs" / directory.name))
    model, tokenizer = load_classifier(model_name, num_labels=len(task.label_names), device=device)
    started = time.perf_counter()
    result = train_classifier(model, tokenizer, task.train_texts, task.train_labels, settings=settings,
                              class_weights=class_weights)
    seconds = time.perf_counter() - started
    proba = predict_proba(result.model, tokenizer, task.test_texts, batch_size=settings.eval_batch_size,
                          max_length=settings.max_length)
    report = classification_report(task.test_labels, proba, labels=list(task.label_names))
    extra = {"class_counts": result.class_counts, "class_weights": result.class_weights,
             "n_train": len(task.train_texts), "n_test": len(task.test_texts)}
    save_classifier(result.model, tokenizer, directory)
    np.save(directory / "test_proba.npy", proba)
    record = {"key": key, "report": report, "history": result.history, "seconds": seconds, "extra": extra}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{task.name}: trained in {seconds:.0f} s on {len(task.train_texts):,} texts; "
          f"test accuracy {report['accuracy']:.3f}, macro F1 {report['macro_f1']:.3f}")
    return FittedClassifier(result.model, tokenizer, report, proba, result.history, seconds, False, directory, extra)


def fit_linear(task: ClassifierTask, settings: LinearSettings, directory: str | Path, *,
               grouped: bool = True) -> FittedClassifier:
    """A `LinearTextClassifier` on `task` (C chosen by cross-validation on the training texts, grouped by
    `task.train_groups` when `grouped`), saved to `directory`; loaded from there when already fitted on the same
    task and settings. `FittedClassifier.tokenizer` is None."""
    directory = Path(directory)
    key = {"task": task.fingerprint(), "linear": asdict(settings), "grouped": bool(grouped)}
    record_path = directory / "fit.json"
    if is_linear_dir(directory) and record_path.is_file() and (directory / "test_proba.npy").is_file():
        record = json.loads(record_path.read_text())
        if record.get("key") == json.loads(json.dumps(key)):
            print(f"{task.name}: loaded the linear classifier fitted earlier from {directory}")
            return FittedClassifier(LinearTextClassifier.load(directory), None, record["report"],
                                    np.load(directory / "test_proba.npy"), [], record["seconds"], True, directory,
                                    record.get("extra", {}))
    model = LinearTextClassifier(task.label_names, settings)
    model.fit(task.train_texts, task.train_labels, groups=task.train_groups if grouped else None)
    proba = model.predict_proba(task.test_texts)
    report = classification_report(task.test_labels, proba, labels=list(task.label_names))
    extra = {"class_counts": np.bincount(task.train_labels, minlength=len(task.label_names)).tolist(),
             "n_train": len(task.train_texts), "n_test": len(task.test_texts), "best_c": model.best_c,
             "cv_log_loss": model.cv_log_loss}
    model.save(directory)
    np.save(directory / "test_proba.npy", proba)
    record = {"key": key, "report": report, "seconds": model.seconds, "extra": extra}
    record_path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{task.name}: linear classifier (C={model.best_c:g} by cross-validation) fitted in {model.seconds:.0f} s "
          f"on {len(task.train_texts):,} texts; test accuracy {report['accuracy']:.3f}, AUC {report['roc_auc']:.3f}")
    return FittedClassifier(model, None, report, proba, [], model.seconds, False, directory, extra)
