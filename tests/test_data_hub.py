"""Corpora from the Hugging Face hub (`hydrate(..., hub_sources=...)`): `datasets.load_dataset` is replaced by a
stand-in that returns small in-memory datasets, so these run offline; the tables and the manifest are checked."""

from __future__ import annotations

import pytest
from datasets import Dataset, DatasetDict

from rlxf.data import hydrate, read_table, write_fixtures
from rlxf.data.files import DataError
from rlxf.data.hub import HUB_DATASETS

TWEETS = [{"date": "2021-01-01", "id": i, "username": f"sen{i % 4}", "text": f"Tweet number {i} about taxes",
           "party": "Democrat" if i % 2 else "Republican", "labels": i % 2} for i in range(40)]
REVIEWS = {"text": ["A wonderful film.", "Dreadful and long.", "I loved it.", "Awful acting."], "label": [1, 0, 1, 0]}
HH = [{"chosen": f"\n\nHuman: question {i}?\n\nAssistant: a kind answer {i}",
       "rejected": f"\n\nHuman: question {i}?\n\nAssistant: a rude answer {i}"} for i in range(5)]


@pytest.fixture
def fake_hub(monkeypatch):
    """`datasets.load_dataset` answering the three hub datasets from memory; records what was asked."""
    asked = []

    def load_dataset(name, **kwargs):
        asked.append((name, kwargs))
        if name == "m-newhauser/senator-tweets":
            return DatasetDict({"train": Dataset.from_list(TWEETS[:30]), "test": Dataset.from_list(TWEETS[30:])})
        if name == "stanfordnlp/imdb":
            unsupervised = Dataset.from_dict({"text": ["no label"], "label": [-1]})
            return DatasetDict({"train": Dataset.from_dict(REVIEWS), "test": Dataset.from_dict(REVIEWS),
                                "unsupervised": unsupervised})
        if name == "Anthropic/hh-rlhf" and kwargs == {"data_dir": "harmless-base"}:
            return DatasetDict({"train": Dataset.from_list(HH), "test": Dataset.from_list(HH[:3])})
        raise FileNotFoundError(f"no such dataset {name} {kwargs}")

    monkeypatch.setattr("datasets.load_dataset", load_dataset)
    return asked


def test_hub_sources_come_from_load_dataset_and_the_manifest_names_them(fake_hub, tmp_path):
    data = write_fixtures(tmp_path / "fixtures")
    out = tmp_path / "tables"
    manifest = hydrate(data, out, sources=["political", "imdb", "hh", "mona"], hub_sources=["political", "imdb", "hh"])
    assert [name for name, _ in fake_hub] == ["m-newhauser/senator-tweets", "stanfordnlp/imdb", "Anthropic/hh-rlhf"]
    tables = manifest["tables"]
    assert tables["political"]["inputs"] == {"hub:m-newhauser/senator-tweets": "not hashed (downloaded)"}
    assert tables["imdb"]["inputs"] == {"hub:stanfordnlp/imdb": "not hashed (downloaded)"}
    assert tables["hh_harmless"]["inputs"] == {"hub:Anthropic/hh-rlhf/harmless-base": "not hashed (downloaded)"}
    assert tables["imdb"]["options"] == {"imdb_hub": True} and tables["hh_harmless"]["options"] == {"hh_hub": True}
    assert manifest["imdb"]["source"] == "hub:stanfordnlp/imdb" and manifest["hh"]["split"] == "test"
    assert all(not name.startswith("hub:") for name in tables["mona"]["inputs"])  # mona: local files, hashed
    imdb = read_table(out, "imdb")
    assert len(imdb) == 8 and set(imdb.split) == {"train", "test"} and set(imdb.label) == {0, 1}  # no unsupervised
    hh = read_table(out, "hh_harmless")
    assert len(hh) == 3 and (hh.prompt + hh.chosen_response == hh.chosen).all()
    assert set(read_table(out, "political").party) == {"Democrat", "Republican"}


def test_local_files_unless_asked(fake_hub, tmp_path):
    manifest = hydrate(write_fixtures(tmp_path / "fixtures"), tmp_path / "tables", sources=["imdb", "hh"])
    assert fake_hub == [] and manifest["tables"]["imdb"]["options"] == {"imdb_hub": False}


def test_plato_and_unknown_names_are_refused(tmp_path):
    with pytest.raises(DataError, match="hub_sources.*plato is read from local Project Gutenberg"):
        hydrate(write_fixtures(tmp_path / "fixtures"), tmp_path / "tables", hub_sources=["plato"])
    assert set(HUB_DATASETS) == {"political", "imdb", "hh"}


def test_a_failed_download_names_the_source_and_the_way_out(monkeypatch, tmp_path):
    def offline(name, **kwargs):
        raise ConnectionError("offline")

    monkeypatch.setattr("datasets.load_dataset", offline)
    with pytest.raises(DataError, match="hub:stanfordnlp/imdb.*drop 'imdb' from hub_sources"):
        hydrate(write_fixtures(tmp_path / "fixtures"), tmp_path / "tables", sources=["imdb"], hub_sources=["imdb"])
