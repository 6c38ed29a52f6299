"""Data hydration: Plato turns, tweet cleaning, MONA labels and splits, manifest counts, re-runs and bad input."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
from pathlib import Path

import pandas as pd
import pytest

from rlxf.data import hydrate, read_table, write_fixtures
from rlxf.data.__main__ import main
from rlxf.data.corpora import read_hh, shared_prompt
from rlxf.data.mona import STATUS_GROUPS, build_mona, policy_prompt, programme_prompts
from rlxf.data.plato import parse_dialogue, skip_reason, strip_gutenberg
from rlxf.data.political import clean_tweet, prepare_political, read_tweets
from rlxf.data.source import locate_data
from rlxf.paths import resolve_data_dir

# `rlxf.data.hydrate` is the function (re-exported by the package); the module is reached through importlib.
hydrate_module = importlib.import_module("rlxf.data.hydrate")

SMALL_DIALOGUE = """\ufeffThe Project Gutenberg eBook of Statesman

Title: Statesman

*** START OF THE PROJECT GUTENBERG EBOOK STATESMAN ***

INTRODUCTION.

In the introduction Jowett may quote a line such as
SOCRATES:  which must not become a turn.

PERSONS OF THE DIALOGUE: Theodorus, Socrates, The Eleatic Stranger, The
Younger Socrates.

SCENE:  Athens.

SOCRATES:  I owe you many thanks, Theodorus, for the
acquaintance both of Theaetetus and of the Stranger.

THEODORUS:  And in a little while,  Socrates, you will owe me three times
as many.

BOOK II.

STRANGER:  Shall we begin with the Statesman?

YOUNG SOCRATES:  By all means.

SOCRATES:  Yes.

A second paragraph of the same turn.
STRANGER:  Then let us go on.
THEODORUS:  Good.
SOCRATES:  Very good.
YOUNG SOCRATES:  True.
STRANGER:  Agreed.
SOCRATES:  Last.

*** END OF THE PROJECT GUTENBERG EBOOK STATESMAN ***

Updated editions will replace the previous one.
"""


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    return write_fixtures(tmp_path_factory.mktemp("fixture-data"))


@pytest.fixture(scope="module")
def hydrated(fixture_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("hydrated")
    return out, hydrate(fixture_dir, out)


# --- Plato ------------------------------------------------------------------------------------------------------


def test_turns_from_a_small_gutenberg_text_with_bom_and_crlf(tmp_path):
    path = tmp_path / "Statesman.txt"
    path.write_bytes(SMALL_DIALOGUE.replace("\n", "\r\n").encode("utf-8"))
    dialogue = parse_dialogue(path)
    assert dialogue.title == "Statesman"
    assert dialogue.skip_reason is None
    assert dialogue.turns[:5] == [
        ("SOCRATES", "I owe you many thanks, Theodorus, for the acquaintance both of Theaetetus and of the Stranger."),
        ("THEODORUS", "And in a little while, Socrates, you will owe me three times as many."),
        ("STRANGER", "Shall we begin with the Statesman?"),
        ("YOUNG SOCRATES", "By all means."),
        ("SOCRATES", "Yes.\n\nA second paragraph of the same turn."),
    ]
    assert [speaker for speaker, _ in dialogue.turns[5:]] == [
        "STRANGER", "THEODORUS", "SOCRATES", "YOUNG SOCRATES", "STRANGER", "SOCRATES",
    ]
    assert dialogue.turns[-1] == ("SOCRATES", "Last.")  # the footer is not part of the last turn
    text = " ".join(utterance for _, utterance in dialogue.turns)
    assert "\r" not in text and "\ufeff" not in text and "BOOK II" not in text and "Updated editions" not in text


def test_dialogue_without_persons_line_or_with_one_long_turn_is_skipped():
    speech = strip_gutenberg("*** START OF X ***\nI do not know, men of Athens...\n*** END OF X ***\n", "Apology.txt")
    assert "PERSONS" not in speech
    turns = [("SOCRATES", "word " * 10)] * 9 + [("CRITO", "word " * 500)]
    body = " ".join(utterance for _, utterance in turns)
    assert "monologue" in skip_reason(turns, body)
    assert "only 3 'NAME:' turns" in skip_reason(turns[:3], body)
    assert skip_reason([("SOCRATES", "yes")] * 12, "yes " * 12).startswith("only 1 speaker")


def test_missing_gutenberg_markers_name_the_file():
    with pytest.raises(ValueError, match=r"Meno\.txt: expected Project Gutenberg '\*\*\* START OF'"):
        strip_gutenberg("SOCRATES:  Hello.\n", "Meno.txt")


def test_plato_turn_table_on_fixtures(hydrated):
    out, manifest = hydrated
    turns = read_table(out, "plato_turns")
    assert manifest["plato"]["turns_by_dialogue"] == {"Crito": 22, "Euthyphro": 14, "Meno": 12}
    assert list(manifest["plato"]["skipped"]) == ["Republic"]
    assert "narrated" in manifest["plato"]["skipped"]["Republic"]
    crito = turns[turns["dialogue"] == "Crito"].reset_index(drop=True)
    assert crito.loc[0, ["speaker", "utterance", "previous", "previous_speaker"]].tolist() == [
        "SOCRATES", "Why have you come at this hour, Crito? it must be quite early.", "", ""]
    assert crito.loc[5, "utterance"] == (
        "He knows me because I often come, Socrates; moreover. I have done him a kindness."
    )
    for _, dialogue in turns.groupby("dialogue"):
        assert dialogue["turn_index"].tolist() == list(range(len(dialogue)))
        assert dialogue["previous"].iloc[1:].tolist() == dialogue["utterance"].iloc[:-1].tolist()
        assert dialogue["previous_speaker"].iloc[1:].tolist() == dialogue["speaker"].iloc[:-1].tolist()
    assert turns["is_socrates"].tolist() == (turns["speaker"] == "SOCRATES").tolist()
    assert turns.loc[turns["is_socrates"], "split"].value_counts().to_dict() == {"train": 22, "test": 2}
    assert turns.loc[~turns["is_socrates"], "split"].isna().all()
    joined = " ".join(turns["utterance"])
    for leak in ("PERSONS OF THE DIALOGUE", "SCENE", "Gutenberg", "INTRODUCTION", "\r", "\ufeff"):
        assert leak not in joined


# --- tweets -----------------------------------------------------------------------------------------------------


def test_clean_tweet_decodes_entities_and_strips_urls_and_mentions():
    raw = "Thanks @SEIU &amp; @a@b for the\nvisit 💪 https://t.co/abc www.house.gov Email me: x.y@mail.house.gov"
    assert clean_tweet(raw) == "Thanks & for the visit 💪 Email me: x.y@mail.house.gov"
    assert clean_tweet(raw, strip_urls=False) == (
        "Thanks @SEIU & @a@b for the visit 💪 https://t.co/abc www.house.gov Email me: x.y@mail.house.gov"
    )


def test_tweet_duplicates_empties_and_stratified_splits(fixture_dir):
    raw = read_tweets(fixture_dir / "political" / "house_tweets_2018.csv")
    tweets, stats = prepare_political(raw, strip_urls=True, seed=0)
    kept, kept_stats = prepare_political(raw, strip_urls=False, seed=0)
    # One exact duplicate; one that differs only by its URL; one tweet that is only a mention and a URL.
    assert (stats["duplicates_dropped"], stats["empty_dropped"], stats["rows"]) == (2, 1, 57)
    assert (kept_stats["duplicates_dropped"], kept_stats["empty_dropped"], kept_stats["rows"]) == (1, 0, 59)
    assert not tweets["text"].duplicated().any()
    assert not tweets["text"].str.contains("&amp;|https?://|@SEIU").any()
    assert tweets["text"].str.contains("💙").any()
    assert stats["split"] == {
        "train": {"Democrat": 30, "Republican": 15},
        "val": {"Democrat": 4, "Republican": 2},
        "test": {"Democrat": 4, "Republican": 2},
    }
    assert stats["imbalance"] == {"majority": "Democrat", "minority": "Republican", "ratio": 2.0}
    again, _ = prepare_political(raw, seed=0)
    other, _ = prepare_political(raw, seed=1)
    assert again["split"].tolist() == tweets["split"].tolist()
    assert other["split"].tolist() != tweets["split"].tolist()


def test_senator_tweets_form_is_accepted(tmp_path):
    path = tmp_path / "senator_tweets.csv"
    pd.DataFrame({
        "date": ["2021-01-01"] * 2, "id": ["1", "2"], "username": ["SenA", "SenB"],
        "text": ["Vote &amp; volunteer", "Cut taxes"], "party": ["Democrat", "Republican"], "labels": ["0", "1"],
    }).to_csv(path, index=False)
    tweets = read_tweets(path)
    assert tweets.columns.tolist() == ["handle", "party", "text"]
    assert tweets["handle"].tolist() == ["SenA", "SenB"]


# --- MONA -------------------------------------------------------------------------------------------------------


def test_mona_status_mapping_and_labels(fixture_dir):
    mona, stats = build_mona(fixture_dir / "mona" / "MONA_From2002_dev.csv")
    assert set(mona["status"]) == set(STATUS_GROUPS)  # the fixture exercises every code, blank included
    assert stats["by_label"] == {"MET": 44, "Non-MET": 26}
    assert (stats["labelled_rows"], stats["not_assessed_rows"], stats["arrangements"]) == (70, 10, 10)
    met = mona["status"].isin(["M", "PM"])
    assessed = mona["label_group"] != "not_assessed"
    assert mona.loc[assessed, "label"].tolist() == met[assessed].astype(int).tolist()
    assert mona.loc[~assessed, "label"].isna().all()
    assert set(mona.loc[~assessed, "status"]) == {"SB", "PC", "PA", "WM", ""}
    first = mona.iloc[0]
    assert first["text"] == (
        f"Country: {first['country']}. Arrangement: {first['arr_type']}. "
        f"Classification: {first['econ_class']}. Condition: {first['condition']}"
    )


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_mona_splits_keep_arrangements_apart(fixture_dir, seed):
    mona, stats = build_mona(fixture_dir / "mona" / "MONA_From2002_dev.csv", seed=seed)
    train = set(mona.loc[mona["split_arrangement"] == "train", "arr_id"])
    test = set(mona.loc[mona["split_arrangement"] == "test", "arr_id"])
    assert train and test and not train & test
    assert len(test) == 2 and len(train) == 8
    assert stats["split_random"]["rows"] == {"train": 64, "test": 16}
    # A random split of rows does put one arrangement on both sides; that is why the other split exists.
    random_test = set(mona.loc[mona["split_random"] == "test", "arr_id"])
    assert random_test & set(mona.loc[mona["split_random"] == "train", "arr_id"])


def test_unknown_status_code_names_file_row_and_code(fixture_dir, tmp_path):
    frame = pd.read_csv(fixture_dir / "mona" / "MONA_From2002_dev.csv", dtype=str, keep_default_na=False)
    frame.loc[2, "Status"] = "XYZ"
    path = tmp_path / "MONA_bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"MONA_bad\.csv: data row 3 has unknown Status code 'XYZ'"):
        build_mona(path)


# --- IMDB and HH ------------------------------------------------------------------------------------------------


def test_hh_prompt_is_the_shared_prefix_up_to_the_assistant_marker(hydrated):
    out, _ = hydrated
    hh = read_table(out, "hh_harmless")
    assert (hh["prompt"] + hh["chosen_response"] == hh["chosen"]).all()
    assert (hh["prompt"] + hh["rejected_response"] == hh["rejected"]).all()
    assert hh["prompt"].str.endswith("\n\nAssistant:").all()
    # Responses that start alike must not pull their common first words into the prompt.
    chosen = "\n\nHuman: Hi\n\nAssistant: I can help with that."
    assert shared_prompt(chosen, "\n\nHuman: Hi\n\nAssistant: I cannot.") == "\n\nHuman: Hi\n\nAssistant:"


def test_imdb_table_keeps_label_text_and_split(hydrated):
    out, _ = hydrated
    imdb = read_table(out, "imdb")
    assert imdb.groupby(["split", "label"]).size().to_dict() == {
        ("test", 0): 20, ("test", 1): 20, ("train", 0): 20, ("train", 1): 20}
    assert imdb["text"].str.contains("<br />").all()


# --- manifest, re-runs, CLI -------------------------------------------------------------------------------------


def test_manifest_counts_on_fixtures(hydrated, fixture_dir):
    out, manifest = hydrated
    political, plato, mona = manifest["political"], manifest["plato"], manifest["mona"]
    assert (political["raw_rows"], political["rows"], political["duplicates_dropped"]) == (60, 57, 2)
    assert political["raw_by_party"] == {"Democrat": 40, "Republican": 20}
    assert political["by_party"] == {"Democrat": 38, "Republican": 19}
    assert (plato["dialogues"], plato["turns"], plato["socrates_turns"]) == (3, 48, 24)
    assert (mona["raw_rows"], mona["labelled_rows"], mona["arrangements"]) == (80, 70, 10)
    assert mona["by_label"] == {"MET": 44, "Non-MET": 26}
    assert manifest["imdb"]["split"] == {"train": 40, "test": 40}
    assert manifest["hh"]["rows"] == 40
    assert manifest["data_source"] == "fixtures"
    assert manifest["data_dir"] == str(fixture_dir)
    assert len(manifest["inputs"]) == 9
    for relative, digest in manifest["inputs"].items():
        assert sha(fixture_dir / relative) == digest
    assert json.loads((out / "manifest.json").read_text()) == manifest
    for name, table in manifest["tables"].items():
        assert len(read_table(out, name)) == table["rows"]


def test_rerun_with_same_inputs_is_a_noop(fixture_dir, tmp_path, capsys):
    out = tmp_path / "out"
    first = hydrate(fixture_dir, out, sources=["political", "mona"])
    stamps = {path.name: path.stat().st_mtime_ns for path in out.iterdir()}
    capsys.readouterr()
    assert hydrate(fixture_dir, out, sources=["mona", "political"]) == first
    assert "up to date" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in out.iterdir()} == stamps
    changed = hydrate(fixture_dir, out, sources=["political", "mona"], strip_urls=False)
    printed = capsys.readouterr().out
    assert "political -> political.parquet (59 rows; built: options changed: strip_urls True -> False)" in printed
    assert "mona      -> mona.parquet is up to date (80 rows)" in printed  # strip_urls is not one of MONA's options
    assert "nothing to do" not in printed
    assert changed["political"]["rows"] == 59
    assert changed["tables"]["political"]["options"] == {"strip_urls": False, "seed": 0, "political_hub": False}
    hydrate(fixture_dir, out, sources=["political", "mona"], strip_urls=False, force=True)
    assert "up to date" not in capsys.readouterr().out


def test_changed_input_is_rebuilt(tmp_path):
    data = write_fixtures(tmp_path / "data")
    first = hydrate(data, tmp_path / "out", sources=["political"])
    path = data / "political" / "house_tweets_2018.csv"
    path.write_text(path.read_text() + "RepNew,Republican,Lower taxes for every family in our district.\n")
    second = hydrate(data, tmp_path / "out", sources=["political"])
    assert second["inputs"] != first["inputs"]
    assert second["political"]["raw_rows"] == 61


def test_fixtures_are_deterministic(tmp_path):
    one, two = write_fixtures(tmp_path / "one"), write_fixtures(tmp_path / "two")
    files = sorted(path.relative_to(one) for path in one.rglob("*") if path.is_file())
    assert len(files) == 10
    assert [sha(one / name) for name in files] == [sha(two / name) for name in files]
    assert (one / "plato" / "Crito.txt").read_bytes().startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in (one / "plato" / "Crito.txt").read_bytes()
    assert len(read_hh(one / "hh-rlhf" / "harmless-base_test.jsonl.gz")[0]) == 40


# sha256 of every fixture file but the parquet ones (whose bytes depend on the pyarrow version).
FIXTURE_SHA256 = {
    "FIXTURES.md": "219d82b1fab2e1a808bd8f49d25e2dd07bf6c984e8ac9fe63a8bb24788220d18",
    "hh-rlhf/harmless-base_test.jsonl.gz": "0366603a735a16d1d590710c93f3a9ce2861b0fde88027763b120fc573dcb19e",
    "mona/MONA_From2002_dev.csv": "f5e912ff0859f797c65e055a36363d2dc219fc8861c4a59a45f50c858822116d",
    "plato/Crito.txt": "93966b78d3194d9d256b6aee9d4b2ea5d52e066c3b78a1e1da2384e8ec53b23a",
    "plato/Euthyphro.txt": "4f9f75c26097fe6cbef0063955bb76e2650ca8fd2238996003a045cb9eaa4765",
    "plato/Meno.txt": "02dd21f06d6c4dfdc46e35fc5c82e89d9486bdbe6aca71abb7d2ed808799b63b",
    "plato/Republic.txt": "9f2f8bac82760f48063a76087b86f418ca686cb4954f3f7daec46f7fe139e5a2",
    "political/house_tweets_2018.csv": "260d8ef69345807f85a74d5d96d9a1fe365c86ef827d7e54d7fc56b95f49f7ab",
}


def test_fixture_bytes_are_pinned(fixture_dir):
    assert {name: sha(fixture_dir / name) for name in FIXTURE_SHA256} == FIXTURE_SHA256


def test_locate_data_says_which_corpora(tmp_path, fixture_dir, capsys):
    path, source = locate_data("fixtures", tmp_path / "artifacts")
    assert (path, source) == ((tmp_path / "artifacts" / "fixture-data").resolve(), "fixtures")
    assert "DATA: FIXTURE CORPORA (asked for)" in capsys.readouterr().out
    real = tmp_path / "real"
    real.mkdir()
    assert locate_data(str(real), tmp_path / "artifacts") == (real.resolve(), str(real.resolve()))
    assert f"DATA: real corpora ({real.resolve()})" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="does not exist"):
        locate_data(str(tmp_path / "typo"), tmp_path / "artifacts")


def test_no_data_dir_falls_back_to_fixtures(tmp_path, monkeypatch):
    monkeypatch.setenv("RLXF_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    monkeypatch.setattr(hydrate_module, "resolve_data_dir", lambda explicit: None)
    manifest = hydrate(None, None, sources=["mona"])
    assert manifest["data_source"] == "fixtures"
    assert (tmp_path / "artifacts" / "data" / "mona.parquet").is_file()
    assert (tmp_path / "artifacts" / "fixture-data" / "FIXTURES.md").is_file()


def test_cli_writes_fixtures_and_hydrates(tmp_path, capsys):
    assert main(["fixtures", "--out", str(tmp_path / "fx")]) == 0
    assert main(["hydrate", "--data-dir", str(tmp_path / "fx"), "--out", str(tmp_path / "out"),
                 "--sources", "plato", "mona", "--no-strip-urls"]) == 0
    printed = capsys.readouterr().out
    assert "plato: 3 dialogues, 48 turns, 24 by Socrates" in printed
    assert "mona: 80 rows, 10 arrangements, 70 labelled" in printed
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == [
        "manifest.json", "mona.parquet", "plato_turns.parquet"]


# --- bad input --------------------------------------------------------------------------------------------------


def test_csv_without_needed_columns(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("handle,text\nRepA,Hello\n")
    with pytest.raises(ValueError, match=r"tweets\.csv: expected columns handle,party,text .*found handle,text"):
        read_tweets(path)
    mona = tmp_path / "mona.csv"
    mona.write_text("CountryName,ArrID,ArrType,EconDescrpt,Descpt\nKENYA,1,SBA,x,y\n")
    with pytest.raises(ValueError, match=r"mona\.csv: missing MONA column\(s\) Status"):
        build_mona(mona)


def test_unknown_party_names_the_row(tmp_path):
    path = tmp_path / "tweets.csv"
    path.write_text("handle,party,text\nRepA,Democrat,Hi\nRepB,Independent,Hello\n")
    with pytest.raises(ValueError, match=r"tweets\.csv: data row 2 has party 'Independent'; expected one of"):
        read_tweets(path)


def test_empty_files(tmp_path):
    for name in ("tweets.csv", "mona.csv", "Crito.txt"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(ValueError, match=r"tweets\.csv: the file is empty \(expected a CSV with columns handle"):
        read_tweets(tmp_path / "tweets.csv")
    with pytest.raises(ValueError, match=r"mona\.csv: the file is empty \(expected a MONA CSV"):
        build_mona(tmp_path / "mona.csv")
    with pytest.raises(ValueError, match=r"Crito\.txt: the file is empty"):
        parse_dialogue(tmp_path / "Crito.txt")
    empty_gz = tmp_path / "hh.jsonl.gz"
    empty_gz.write_bytes(gzip.compress(b""))
    with pytest.raises(ValueError, match=r"hh\.jsonl\.gz: no preference pairs"):
        read_hh(empty_gz)


def test_missing_data_directory_and_missing_source(tmp_path, fixture_dir):
    with pytest.raises(FileNotFoundError, match=r"data directory '.*nowhere' does not exist"):
        hydrate(tmp_path / "nowhere", tmp_path / "out")
    partial = tmp_path / "partial"
    (partial / "mona").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no input for source 'mona'; expected mona/MONA_From2002_dev\.csv"):
        hydrate(partial, tmp_path / "out", sources=["mona"])
    with pytest.raises(ValueError, match=r"sources: got \['tweets'\]; expected a non-empty subset"):
        hydrate(fixture_dir, tmp_path / "out", sources=["tweets"])
    with pytest.raises(ValueError, match=r"table 'plato' is unknown"):
        read_table(tmp_path, "plato")
    with pytest.raises(FileNotFoundError, match=r"mona\.parquet: table not found"):
        read_table(tmp_path, "mona")


# --- real data --------------------------------------------------------------------------------------------------


def test_real_data_counts(tmp_path):
    data_dir = resolve_data_dir(None)
    if data_dir is None or (data_dir / "FIXTURES.md").exists():
        pytest.skip("no real data directory (set RLXF_DATA_DIR or put the data in ../shared/data)")
    manifest = hydrate(data_dir, tmp_path, sources=["political", "plato", "mona"])
    assert manifest["political"]["raw_rows"] == 12_522
    assert manifest["political"]["raw_by_party"] == {"Democrat": 8_352, "Republican": 4_170}
    assert manifest["mona"]["raw_rows"] == 5_218
    assert manifest["mona"]["arrangements"] == 149
    assert manifest["mona"]["by_label"] == {"MET": 2_865, "Non-MET": 1_623}
    assert {"Republic", "Symposium", "Protagoras", "Apology", "Phaedo"} <= set(manifest["plato"]["skipped"])
    assert {"Crito", "Euthyphro", "Meno", "Gorgias"} <= set(manifest["plato"]["turns_by_dialogue"])


def test_policy_prompt_follows_the_study_template():
    prompt = policy_prompt("KENYA", "SBA", "1.8. Budget preparation (e.g., submission or approval)")
    assert prompt == ("Given the economic indicators and historical performance of Kenya, what would be an appropriate "
                      "policy proposal under the SBA arrangement for achieving budget preparation (e.g., submission or "
                      "approval)? Describe the proposed condition.")
    assert "achieving VAT reform?" in policy_prompt("KENYA", "SBA", "VAT reform.")


def test_programme_prompts_one_per_programme_keyed_by_the_formatted_prompt():
    table = pd.DataFrame({"country": ["KENYA", "KENYA", "GHANA"], "arr_type": ["SBA", "SBA", "ECF"],
                          "econ_class": ["3. Civil service", "3. Civil service", "1.5. Debt Management"]})
    prompts, metadata = programme_prompts(table, lambda p: f"<user>{p}</user>")
    assert len(prompts) == 2 and all(p.startswith("<user>") for p in prompts)
    assert metadata[prompts[0]] == {"country": "KENYA", "arr_type": "SBA", "econ_class": "3. Civil service"}
    assert len(programme_prompts(table, max_prompts=1)[0]) == 1
    with pytest.raises(ValueError, match="econ_class"):
        programme_prompts(table.drop(columns="econ_class"))
