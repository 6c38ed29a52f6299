"""Political tweets: read, clean, de-duplicate and split per party (train/val/test 80/10/10).

Two input forms are accepted:
- `political/house_tweets_2018.csv` with columns `handle,party,text` (the offline copy);
- the Hugging Face dataset `m-newhauser/senator-tweets` (columns `date,id,username,text,party,labels`), either as a
  local CSV/parquet export or fetched by `rlxf.data.hub.read_tweets_hub()` (internet; never called implicitly).

Cleaning (`clean_tweet`): HTML entities are decoded (`&amp;` -> `&`), emoji are kept, whitespace (newlines included)
is collapsed to single spaces. With `strip_urls=True` (the default for training text) URLs and @mentions are removed
too, so a classifier cannot key on a member's links or colleagues' handles. Rows whose text is empty after cleaning
are dropped, then exact duplicates of the cleaned text are dropped (the first is kept) so that no text sits in two
splits; both counts are reported.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from rlxf.data.files import DataError, read_parquet_file, read_text_csv

PARTIES = ("Democrat", "Republican")
HOUSE_COLUMNS = ("handle", "party", "text")
SENATOR_COLUMNS = ("date", "id", "username", "text", "party", "labels")
SENATOR_DATASET = "m-newhauser/senator-tweets"
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
OUTPUT_COLUMNS = ["handle", "party", "text", "split"]

URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
# An @mention (or run of mentions typed without spaces, `@a@b`): not preceded by a word character, so e-mail
# addresses are left alone.
MENTION_RE = re.compile(r"(?<!\w)@\w+(?:@\w+)*")


def clean_tweet(text: str, strip_urls: bool = True) -> str:
    """Decode HTML entities, optionally drop URLs and @mentions, collapse whitespace; emoji are kept."""
    text = html.unescape(text)
    if strip_urls:
        text = MENTION_RE.sub(" ", URL_RE.sub(" ", text))
    return " ".join(text.split())


def _read_any(path: Path) -> pd.DataFrame:
    expected = f"a CSV with columns {','.join(HOUSE_COLUMNS)}"
    if path.suffix == ".parquet":
        return read_parquet_file(path, f"parquet with columns {','.join(SENATOR_COLUMNS)}")
    return read_text_csv(path, expected)


def normalize_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    """Either input form to columns (handle, party, text), validating the party of every row."""
    columns = set(frame.columns)
    if set(HOUSE_COLUMNS) <= columns:
        out = frame[list(HOUSE_COLUMNS)].copy()
    elif set(SENATOR_COLUMNS) <= columns:
        out = frame[["username", "party", "text"]].rename(columns={"username": "handle"})
    else:
        raise DataError(
            f"{source}: expected columns {','.join(HOUSE_COLUMNS)} (house form) or {','.join(SENATOR_COLUMNS)} "
            f"({SENATOR_DATASET} form), found {','.join(map(str, frame.columns))}"
        )
    if out.empty:
        raise DataError(f"{source}: no rows (expected tweets with columns {','.join(HOUSE_COLUMNS)})")
    bad = ~out["party"].isin(PARTIES)
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{source}: data row {row + 1} has party {out['party'].iloc[row]!r}; expected one of {list(PARTIES)}"
        )
    missing = out["text"].isna() | out["handle"].isna()
    if missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise DataError(f"{source}: data row {row + 1} has no text or no handle (null); expected both as text")
    out = out.astype({"handle": str, "party": str, "text": str})
    return out.reset_index(drop=True)


def read_tweets(path: Path) -> pd.DataFrame:
    """Read a tweets file (house or senator form) as (handle, party, text), all text."""
    path = Path(path)
    if not path.is_file():
        expected = ",".join(HOUSE_COLUMNS)
        raise FileNotFoundError(f"{path}: tweets file not found (expected a CSV with columns {expected})")
    return normalize_columns(_read_any(path), str(path))


def stratified_split(party: pd.Series, seed: int) -> pd.Series:
    """Seeded train/val/test labels (80/10/10) drawn separately within each party."""
    rng = np.random.default_rng(seed)
    split = pd.Series("", index=party.index, dtype=object)
    for name in PARTIES:
        index = party.index[(party == name).to_numpy()]
        shuffled = index[rng.permutation(len(index))]
        n_train = int(round(SPLIT_FRACTIONS["train"] * len(index)))
        n_val = int(round(SPLIT_FRACTIONS["val"] * len(index)))
        split[shuffled[:n_train]] = "train"
        split[shuffled[n_train : n_train + n_val]] = "val"
        split[shuffled[n_train + n_val :]] = "test"
    return split


def prepare_political(
    raw: pd.DataFrame, *, strip_urls: bool = True, seed: int = 0, source: str = "tweets"
) -> tuple[pd.DataFrame, dict]:
    """Clean, de-duplicate and split raw (handle, party, text) rows; return the table and its manifest section.

    An empty result, or one with a single party, is an error naming `source`: the classifier needs both parties.
    """
    tweets = raw.copy()
    tweets["text"] = [clean_tweet(text, strip_urls) for text in tweets["text"]]
    empty = tweets["text"] == ""
    if empty.all():
        urls = " once URLs and @mentions are removed (strip_urls=True)" if strip_urls else ""
        raise DataError(f"{source}: all {len(raw):,} tweets are blank{urls}; expected tweet text")
    tweets = tweets[~empty]
    present = {name: int((tweets["party"] == name).sum()) for name in PARTIES}
    if not all(present.values()):
        raise DataError(
            f"{source}: only {', '.join(name for name in PARTIES if present[name])} tweets ({present}); "
            f"expected tweets of both parties ({' and '.join(PARTIES)}): the classifier tells them apart"
        )
    duplicated = tweets.duplicated(subset="text", keep="first")
    # A text posted by both parties is a label conflict as well as a duplicate: count it.
    both_parties = tweets.groupby("text")["party"].transform("nunique") > 1
    tweets = tweets[~duplicated].reset_index(drop=True)
    tweets["split"] = stratified_split(tweets["party"], seed)
    by_party = {name: int((tweets["party"] == name).sum()) for name in PARTIES}
    majority, minority = max(by_party, key=by_party.get), min(by_party, key=by_party.get)
    stats = {
        "raw_rows": len(raw),
        "raw_by_party": {name: int((raw["party"] == name).sum()) for name in PARTIES},
        "empty_dropped": int(empty.sum()),
        "duplicates_dropped": int(duplicated.sum()),
        "duplicates_with_both_parties": int((duplicated & both_parties).sum()),
        "rows": len(tweets),
        "by_party": by_party,
        "imbalance": {
            "majority": majority,
            "minority": minority,
            "ratio": round(by_party[majority] / max(by_party[minority], 1), 3),
        },
        "handles": int(tweets["handle"].nunique()),
        "strip_urls": strip_urls,
        "split": {
            name: {party: int(((tweets["split"] == name) & (tweets["party"] == party)).sum()) for party in PARTIES}
            for name in SPLIT_FRACTIONS
        },
    }
    return tweets[OUTPUT_COLUMNS], stats
