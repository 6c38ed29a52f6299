"""Classifier rewards against their baselines on notebook 03's splits: AUC and accuracy with 95 % CIs, and seconds.

Rows per task: the majority class, 03's TF-IDF + logistic-regression baseline (balanced class weights, the texts of
the task), for MONA also the issue's baseline with structured fields (TF-IDF of the text + one-hot condition type,
review type, source, arrangement type and programme year, read from the raw CSV), and the candidate reward
`rlxf.rewards.linear.LinearTextClassifier` (C chosen by cross-validation on the training split only; MONA: with the
condition type in its text). The MiniLM fine-tunes are not rerun here (minutes each on 2 cores): their demo numbers
are in results/demo. Writes results/benchmarks/reward_baselines.json.

    PYTHONPATH=. python benchmarks/reward_baselines.py --data /tmp/rewards-data --raw-mona ../shared/data/mona/...
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from rlxf.analysis.stats import auc_ci, bootstrap_ci, compare_paired
from rlxf.data import read_table
from rlxf.data.mona import read_mona
from rlxf.rewards.linear import LinearSettings, LinearTextClassifier
from rlxf.rewards.reports import baselines
from rlxf.rewards.tasks import mona_task, party_task, sentiment_task

ISSUE_FIELDS = ["condition_type", "ReviewType", "CondtSource", "arr_type", "IniPgmYr"]


def measure(name: str, y: np.ndarray, p1: np.ndarray, seconds: float, seed: int) -> dict:
    correct = ((p1 >= 0.5).astype(int) == y).astype(float)
    auc = auc_ci(p1, y, seed=seed)
    return {"model": name, "n_test": int(len(y)), "auc": auc["auc"], "auc_ci": [auc["low"], auc["high"]],
            "accuracy": float(correct.mean()), "accuracy_ci": list(bootstrap_ci(correct, seed=seed)),
            "predicted_1_share": float((p1 >= 0.5).mean()), "seconds": round(seconds, 2), "_correct": correct}


def run_task(task, seed: int, settings: LinearSettings, extra_rows=()) -> list[dict]:
    y = task.test_labels
    started = time.perf_counter()
    base = baselines(task.train_texts, task.train_labels, task.test_texts, task.test_labels, seed=seed)
    seconds = time.perf_counter() - started
    rows = [{"model": "majority", "n_test": int(len(y)), "accuracy": base["majority"]["accuracy"], "auc": 0.5},
            measure(f"tfidf_logreg on {task.name} (03 baseline)", y, _proba1(task, seed), seconds, seed)]
    rows += list(extra_rows)
    model = LinearTextClassifier(task.label_names, settings)
    started = time.perf_counter()
    model.fit(task.train_texts, task.train_labels, groups=task.train_groups)
    p1 = model.predict_proba(task.test_texts)[:, 1]
    row = measure(f"linear reward (C={model.best_c:g} by CV)", y, p1, time.perf_counter() - started, seed)
    rows.append(row)
    for reference in rows[1:-1]:
        gain = compare_paired(row["_correct"], reference["_correct"], seed=seed)
        row[f"accuracy_gain_vs[{reference['model']}]"] = [gain["diff"], gain["diff_low"], gain["diff_high"]]
    return rows


def _proba1(task, seed: int) -> np.ndarray:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    regression = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
    regression.fit(vectorizer.fit_transform(task.train_texts), task.train_labels)
    return regression.predict_proba(vectorizer.transform(task.test_texts))[:, 1]


def issue_baseline(mona, raw, split: str, seed: int) -> dict:
    """TF-IDF(text) + one-hot(condition type, review type, source, arrangement type, programme year)."""
    table = mona.assign(**{c: raw[c].str.strip().to_numpy() for c in ISSUE_FIELDS if c in raw.columns})
    labelled = table[table.label.notna()]
    train, test = labelled[labelled[split] == "train"], labelled[labelled[split] == "test"]
    pipeline = make_pipeline(
        ColumnTransformer([("text", TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), "text"),
                           ("fields", OneHotEncoder(handle_unknown="ignore"), ISSUE_FIELDS)]),
        LogisticRegression(max_iter=3000, class_weight="balanced", random_state=seed))
    started = time.perf_counter()
    pipeline.fit(train, train.label.astype(int))
    p1 = pipeline.predict_proba(test)[:, 1]
    return measure("issue baseline: text + 5 fields", test.label.to_numpy(int), p1, time.perf_counter() - started,
                   seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/tmp/rewards-data", help="hydrated tables (python -m rlxf.data hydrate)")
    parser.add_argument("--raw-mona", default="../shared/data/mona/MONA_From2002_dev.csv")
    parser.add_argument("--sentiment-train", type=int, default=10000, help="IMDB training reviews (0: all 25,000)")
    parser.add_argument("--sentiment-test", type=int, default=2000, help="IMDB test reviews scored")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=["mona", "party", "sentiment"])
    parser.add_argument("--out", default="results/benchmarks/reward_baselines.json")
    args = parser.parse_args()
    settings = LinearSettings(seed=args.seed)
    results = {}
    if "mona" in args.only:
        mona = read_table(args.data, "mona")
        raw = read_mona(Path(args.raw_mona))
        if len(raw) != len(mona):
            raise ValueError(f"{args.raw_mona}: {len(raw)} rows, the hydrated MONA table {len(mona)}: other data")
        for split in ("split_random", "split_arrangement"):
            plain = mona_task(mona, split=split, seed=args.seed)
            typed = mona_task(mona, split=split, seed=args.seed, with_type=True)
            rows = run_task(plain, args.seed, settings, [issue_baseline(mona, raw, split, args.seed)])
            rows[-1]["model"] = "linear reward, text only " + rows[-1]["model"][len("linear reward "):]
            typed_rows = run_task(typed, args.seed, settings, rows[1:])
            results[f"mona.{split}"] = rows[:1] + typed_rows[1:]
    if "party" in args.only:
        tweets = read_table(args.data, "political")
        for name, by_handle in (("party", False), ("party.by_handle", True)):
            results[name] = run_task(party_task(tweets, seed=args.seed, by_handle=by_handle), args.seed, settings)
    if "sentiment" in args.only:
        imdb = read_table(args.data, "imdb")
        task = sentiment_task(imdb, max_train=args.sentiment_train, max_test=args.sentiment_test, seed=args.seed)
        results["sentiment"] = run_task(task, args.seed, settings)
    for name, rows in results.items():
        print(f"\n== {name}")
        for row in rows:
            row.pop("_correct", None)
            ci = row.get("auc_ci", [np.nan, np.nan])
            print(f"  {row['model']:48s} n={row['n_test']:5d} AUC {row['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] "
                  f"acc {row['accuracy']:.3f} {row.get('seconds', 0):6.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"cpus": os.cpu_count(), "load_average": os.getloadavg(), "seed": args.seed,
            "sentiment_train": args.sentiment_train, "sentiment_test": args.sentiment_test}
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1, default=float) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
