"""The corpora that can come from the Hugging Face hub instead of local files, through `datasets.load_dataset`.

Asked for per source (`hydrate(..., hub_sources=["imdb"])`, notebook 01's `hub_sources`); never implicitly. The
tables are the same as from the local files, checked the same way; the manifest names the hub dataset as the input.
Plato stays local: the dialogues come from Project Gutenberg's texts, which are not a hub dataset.
"""

from __future__ import annotations

import json

import pandas as pd

from rlxf.data import corpora, political
from rlxf.data.files import DataError

HUB_DATASETS = {
    "political": (political.SENATOR_DATASET, {}),
    "imdb": ("stanfordnlp/imdb", {}),
    "hh": ("Anthropic/hh-rlhf", {"data_dir": "harmless-base"}),
}
"""source -> (hub dataset id, keyword arguments of `load_dataset`)"""
HH_SPLIT = "test"
"""the HH-RLHF split read (the local copy is harmless-base_test.jsonl.gz)"""


def hub_input(source: str) -> str:
    """How a hub source is named in the manifest's inputs, e.g. `hub:Anthropic/hh-rlhf/harmless-base`."""
    dataset, kwargs = HUB_DATASETS[source]
    return f"hub:{dataset}" + (f"/{kwargs['data_dir']}" if "data_dir" in kwargs else "")


def check_hub_sources(hub_sources) -> set[str]:
    """The sources to read from the hub; an unknown one (or plato) is an error naming the parameter."""
    hub_sources = [hub_sources] if isinstance(hub_sources, str) else list(hub_sources or [])
    unknown = [name for name in hub_sources if name not in HUB_DATASETS]
    if unknown:
        raise DataError(f"hub_sources: {unknown} cannot come from the hub; expected a subset of {list(HUB_DATASETS)} "
                        "(plato is read from local Project Gutenberg texts only)")
    return set(hub_sources)


def load(source: str):
    """The hub dataset of `source` (a DatasetDict of its splits); needs the internet or the local datasets cache."""
    from datasets import load_dataset

    dataset, kwargs = HUB_DATASETS[source]
    try:
        return load_dataset(dataset, **kwargs)
    except Exception as error:  # noqa: BLE001 - datasets raises many kinds; say which source and what to do
        raise DataError(f"{hub_input(source)}: could not be loaded from the Hugging Face hub ({error}); drop "
                        f"{source!r} from hub_sources to read the local files instead") from error


def read_tweets_hub() -> pd.DataFrame:
    """`m-newhauser/senator-tweets` (all splits) as raw tweets (handle, party, text) for `prepare_political`."""
    from datasets import concatenate_datasets

    splits = load("political")
    frame = concatenate_datasets([splits[name] for name in sorted(splits)]).to_pandas()
    return political.normalize_columns(frame, hub_input("political"))


def read_imdb_hub() -> tuple[pd.DataFrame, dict]:
    """`stanfordnlp/imdb` (train and test splits) as the IMDB table; the hub's copy has no star rating: 0."""
    splits = load("imdb")
    parts = []
    for split in corpora.IMDB_FILES:
        if split not in splits:
            raise DataError(f"{hub_input('imdb')}: no {split!r} split; found {list(splits)}")
        frame = splits[split].to_pandas()
        missing = [column for column in ("label", "text") if column not in frame.columns]
        if missing or frame.empty:
            raise DataError(f"{hub_input('imdb')} {split}: expected rows with label and text; found "
                            f"{len(frame)} rows, columns {list(frame.columns)}")
        parts.append(frame[["label", "text"]].assign(rating=0, split=split))
    imdb = pd.concat(parts, ignore_index=True)[["label", "rating", "text", "split"]]
    bad = ~imdb["label"].isin([0, 1])
    if bad.any():
        raise DataError(f"{hub_input('imdb')}: row {int(bad.to_numpy().argmax()) + 1} has label "
                        f"{imdb['label'][bad].iloc[0]!r}; expected 0 (negative) or 1 (positive)")
    imdb = imdb.astype({"label": "int64", "rating": "int64", "text": str})
    return imdb, {**corpora.imdb_stats(imdb), "source": hub_input("imdb"), "rating": "0: not in the hub's copy"}


def read_hh_hub() -> tuple[pd.DataFrame, dict]:
    """The `test` split of `Anthropic/hh-rlhf` (harmless-base) as the HH-RLHF table."""
    splits = load("hh")
    if HH_SPLIT not in splits:
        raise DataError(f"{hub_input('hh')}: no {HH_SPLIT!r} split; found {list(splits)}")
    lines = (json.dumps(record) for record in splits[HH_SPLIT])
    hh, stats = corpora.hh_table(corpora.hh_rows(lines, f"{hub_input('hh')} {HH_SPLIT}"), hub_input("hh"))
    return hh, {**stats, "source": hub_input("hh"), "split": HH_SPLIT}
