"""IMDB reviews and HH-RLHF harmless preference pairs, read as they are.

IMDB: `imdb/imdb_train.parquet` and `imdb/imdb_test.parquet` (columns label,id,rating,text,path) become one table
(label, rating, text, split) with split 'train'/'test' from the file; the text is unchanged (`<br />` tags kept).

HH-RLHF: `hh-rlhf/harmless-base_test.jsonl.gz`, one JSON object per line with `chosen` and `rejected`
conversations ("\\n\\nHuman: ... \\n\\nAssistant: ..."). `prompt` is their shared prefix cut back to the end of its
last "\\n\\nAssistant:" marker, so that `prompt + chosen_response == chosen` and likewise for `rejected`.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from rlxf.data.files import DataError, read_parquet_file

IMDB_FILES = {"train": "imdb_train.parquet", "test": "imdb_test.parquet"}
IMDB_COLUMNS = ("label", "rating", "text")
HH_COLUMNS = ("chosen", "rejected")
ASSISTANT = "\n\nAssistant:"


def read_imdb(imdb_dir: Path) -> tuple[pd.DataFrame, dict]:
    """Both IMDB parquet files as one table (label, rating, text, split) and its manifest section."""
    parts = []
    for split, name in IMDB_FILES.items():
        path = Path(imdb_dir) / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: IMDB file not found (expected parquet with columns label,text,rating)")
        frame = read_parquet_file(path, "parquet with columns label,text,rating")
        missing = [column for column in IMDB_COLUMNS if column not in frame.columns]
        if missing:
            found = ",".join(map(str, frame.columns))
            raise DataError(f"{path}: missing column(s) {','.join(missing)}; found {found}")
        if frame.empty:
            raise DataError(f"{path}: no rows (expected IMDB reviews with label, rating, text)")
        _check_imdb(frame, path)
        parts.append(frame[list(IMDB_COLUMNS)].assign(split=split))
    imdb = pd.concat(parts, ignore_index=True).astype({"label": "int64", "rating": "int64", "text": str})
    return imdb, imdb_stats(imdb)


def imdb_stats(imdb: pd.DataFrame) -> dict:
    """The IMDB table's manifest section: rows, per split, per label."""
    return {
        "rows": len(imdb),
        "split": {split: int((imdb["split"] == split).sum()) for split in IMDB_FILES},
        "by_label": {str(label): int(n) for label, n in imdb["label"].value_counts().sort_index().items()},
    }


def _check_imdb(frame: pd.DataFrame, path: Path) -> None:
    """Labels 0/1, integer ratings 1..10 and text on every row; else an error naming the file and row."""
    checks = (
        ("label", ~frame["label"].isin([0, 1]), "0 (negative) or 1 (positive)"),
        ("rating", ~pd.to_numeric(frame["rating"], errors="coerce").isin(range(1, 11)), "an integer from 1 to 10"),
        ("text", ~frame["text"].map(lambda text: isinstance(text, str)).astype(bool), "the review as text"),
    )
    for column, bad, expected in checks:
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = frame[column].iloc[row]
            value = value.item() if isinstance(value, np.generic) else value
            shown = "null" if value is None or (not isinstance(value, str) and pd.isna(value)) else repr(value)
            raise DataError(f"{path}: row {row + 1} has {column} {shown}; expected {expected}")


def shared_prompt(chosen: str, rejected: str) -> str:
    """The common prefix of two conversations up to and including its last '\\n\\nAssistant:' marker."""
    prefix = os.path.commonprefix([chosen, rejected])
    end = prefix.rfind(ASSISTANT)
    return prefix[: end + len(ASSISTANT)] if end >= 0 else ""


def read_hh(path: Path) -> tuple[pd.DataFrame, dict]:
    """HH-RLHF pairs (prompt, chosen, rejected, chosen_response, rejected_response) and their manifest section."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: HH-RLHF file not found (expected gzipped JSON lines with chosen, rejected)")
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            rows = hh_rows(lines, path)
    except (gzip.BadGzipFile, EOFError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: not a readable gzip file of UTF-8 JSON lines ({error})") from None
    return hh_table(rows, path)


def hh_table(rows: list[tuple[str, ...]], where) -> tuple[pd.DataFrame, dict]:
    """The HH-RLHF table from `hh_rows` and its manifest section; no rows is an error naming `where`."""
    if not rows:
        raise DataError(f"{where}: no preference pairs (expected JSON lines with 'chosen' and 'rejected')")
    hh = pd.DataFrame(rows, columns=["prompt", "chosen", "rejected", "chosen_response", "rejected_response"])
    stats = {"rows": len(hh), "prompt_turns_mean": round(float(hh["prompt"].str.count("Human:").mean()), 3)}
    return hh, stats


def hh_rows(lines: Iterable[str], path) -> list[tuple[str, ...]]:
    """(prompt, chosen, rejected, chosen_response, rejected_response) per JSON line; errors name `path` and line."""
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{path}: line {number} is not JSON ({error.msg})") from None
        if not isinstance(record, dict) or not all(isinstance(record.get(key), str) for key in HH_COLUMNS):
            raise DataError(f"{path}: line {number}: expected an object with string fields 'chosen' and 'rejected'")
        chosen, rejected = record["chosen"], record["rejected"]
        prompt = shared_prompt(chosen, rejected)
        if not prompt:
            raise DataError(f"{path}: line {number}: chosen and rejected share no '{ASSISTANT.strip()}' prefix")
        rows.append((prompt, chosen, rejected, chosen[len(prompt) :], rejected[len(prompt) :]))
    return rows
