"""Hydration under faults: a run that fails part-way, interrupted writes, bad bytes and rows, empty results."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rlxf.data import hydrate, load_manifest, read_table, write_fixtures
from rlxf.data.__main__ import main
from rlxf.data.corpora import read_imdb
from rlxf.data.files import DataError
from rlxf.data.mona import build_mona
from rlxf.data.plato import build_plato, parse_dialogue
from rlxf.data.political import prepare_political, read_tweets
from rlxf.paths import REPO_ROOT

MONA = "mona/MONA_From2002_dev.csv"
RAGGED_ROW = b"KENYA,1,SBA" + b",x" * 20 + b"\n"  # 23 fields where the header has 20
TWEETS = "political/house_tweets_2018.csv"


@pytest.fixture()
def data(tmp_path) -> Path:
    return write_fixtures(tmp_path / "data")


# --- up to date is decided per table; a failed run leaves nothing that looks finished ----------------------------


def test_a_run_that_fails_part_way_does_not_leave_a_stale_table_up_to_date(data, tmp_path, capsys):
    """The issue's sequence: URLs stripped; URLs kept but a later source fails; URLs stripped again."""
    out = tmp_path / "out"
    hydrate(data, out, sources=["political", "mona"])
    good = (data / MONA).read_bytes()
    (data / MONA).write_bytes(good + RAGGED_ROW)
    with pytest.raises(ValueError):  # political is rebuilt first, with URLs; then MONA fails
        hydrate(data, out, sources=["political", "mona"], strip_urls=False)
    (data / MONA).write_bytes(good)
    capsys.readouterr()
    third = hydrate(data, out, sources=["political", "mona"])
    printed = capsys.readouterr().out
    assert "nothing to do" not in printed
    tweets = read_table(out, "political")
    assert not tweets["text"].str.contains(r"https?://|(?<!\w)@\w").any(), "URLs or @mentions left in the table"
    assert len(tweets) == third["political"]["rows"] == 57
    assert "political -> political.parquet (57 rows; built: options changed: strip_urls False -> True)" in printed
    assert "mona      -> mona.parquet is up to date (80 rows)" in printed
    assert third == load_manifest(out)
    assert third["tables"]["political"]["options"] == {"strip_urls": True, "seed": 0, "political_hub": False}


def test_the_failed_run_records_the_table_it_wrote_and_only_that(data, tmp_path):
    out = tmp_path / "out"
    first = hydrate(data, out, sources=["political", "mona"])
    (data / MONA).write_bytes((data / MONA).read_bytes() + RAGGED_ROW)
    with pytest.raises(DataError, match=r"MONA_From2002_dev\.csv: line 82 has 23 fields; expected 20"):
        hydrate(data, out, sources=["political", "mona"], strip_urls=False)
    manifest = load_manifest(out)
    assert manifest["tables"]["political"]["options"]["strip_urls"] is False
    assert manifest["political"]["rows"] == len(read_table(out, "political")) == 59
    assert manifest["tables"]["mona"] == first["tables"]["mona"]  # the old MONA table, untouched and still true
    assert sorted(path.name for path in out.iterdir()) == ["manifest.json", "mona.parquet", "political.parquet"]


def test_an_interrupted_table_write_keeps_the_old_table_and_its_entry(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    hydrate(data, out, sources=["political"])
    table, manifest = (out / "political.parquet").read_bytes(), load_manifest(out)

    def half_written(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PAR1 and then the disk filled up")
        raise OSError("No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_written)
    with pytest.raises(OSError, match="No space left"):
        hydrate(data, out, sources=["political"], strip_urls=False)
    monkeypatch.undo()
    assert (out / "political.parquet").read_bytes() == table
    assert load_manifest(out) == manifest
    assert sorted(path.name for path in out.iterdir()) == ["manifest.json", "political.parquet"]  # no temp file
    capsys.readouterr()
    hydrate(data, out, sources=["political"])
    assert "nothing to do" in capsys.readouterr().out


def test_a_crash_after_a_table_is_replaced_leaves_no_entry_for_it(data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    hydrate(data, out, sources=["political", "mona"])
    hydrate_module = importlib.import_module("rlxf.data.hydrate")
    write_manifest, writes = hydrate_module._write_manifest, []

    def killed_on_second_write(out_path, manifest):
        writes.append(sorted(manifest["tables"]))
        if len(writes) == 2:
            raise KeyboardInterrupt  # killed after the new political.parquet took the old one's place
        write_manifest(out_path, manifest)

    monkeypatch.setattr(hydrate_module, "_write_manifest", killed_on_second_write)
    with pytest.raises(KeyboardInterrupt):
        hydrate(data, out, sources=["political", "mona"], strip_urls=False)
    monkeypatch.undo()
    assert writes[0] == ["mona"]  # the old political entry went before its file was replaced
    assert len(read_table(out, "political")) == 59
    manifest = load_manifest(out)
    assert set(manifest["tables"]) == {"mona"} and "political" not in manifest
    capsys.readouterr()
    hydrate(data, out, sources=["political", "mona"])
    assert "political -> political.parquet (57 rows; built: no table recorded yet)" in capsys.readouterr().out


def test_another_data_dir_rebuilds(data, tmp_path, capsys):
    out = tmp_path / "out"
    hydrate(data, out, sources=["mona"])
    copy = shutil.copytree(data, tmp_path / "copy")
    capsys.readouterr()
    manifest = hydrate(copy, out, sources=["mona"])
    assert f"built: the tables were built from another data_dir, {data}" in capsys.readouterr().out
    assert manifest["data_dir"] == str(copy)


def test_a_missing_or_changed_table_file_is_rebuilt_alone(data, tmp_path, capsys):
    out = tmp_path / "out"
    hydrate(data, out, sources=["political", "mona"])
    (out / "political.parquet").unlink()
    capsys.readouterr()
    hydrate(data, out, sources=["political", "mona"])
    printed = capsys.readouterr().out
    assert "political -> political.parquet (57 rows; built: political.parquet is missing)" in printed
    assert "mona      -> mona.parquet is up to date" in printed
    shutil.copy(out / "mona.parquet", out / "political.parquet")
    hydrate(data, out, sources=["political", "mona"])
    assert "built: political.parquet differs from the file this manifest recorded" in capsys.readouterr().out
    assert len(read_table(out, "political")) == 57


def test_tables_not_asked_for_stay_recorded_and_reusable(data, tmp_path, capsys):
    out = tmp_path / "out"
    hydrate(data, out, sources=["political", "mona"])
    only = hydrate(data, out, sources=["political"], strip_urls=False)
    assert set(only["tables"]) == {"political", "mona"} and only["mona"]["raw_rows"] == 80
    capsys.readouterr()
    hydrate(data, out, sources=["mona"])
    assert "nothing to do" in capsys.readouterr().out


def test_a_manifest_of_the_old_format_rebuilds_everything(data, tmp_path, capsys):
    out = tmp_path / "out"
    hydrate(data, out, sources=["mona"])
    (out / "manifest.json").write_text('{"format_version": 1, "options": {}, "inputs": {}, "tables": {}}')
    capsys.readouterr()
    hydrate(data, out, sources=["mona"])
    assert "built: the manifest has format 1, expected 2" in capsys.readouterr().out


# --- bad bytes, bad rows, bad values: the file, the line or row, and what was expected --------------------------


def test_latin1_bytes_name_the_file_and_line(tmp_path):
    tweets = tmp_path / "tweets.csv"
    tweets.write_bytes("handle,party,text\nRepA,Democrat,Hi\nRepB,Republican,Café con leche\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"tweets\.csv: line 3, byte 20: byte 0xe9 is not UTF-8 .*expected a CSV "
                                        r"with columns handle,party,text encoded as UTF-8"):
        read_tweets(tweets)
    mona = tmp_path / "mona.csv"
    mona.write_bytes("CountryName,ArrID,ArrType,EconDescrpt,Descpt,Status\nCÔTE D'IVOIRE,1,ECF,x,y,M\n"
                     .encode("cp1252"))
    with pytest.raises(DataError, match=r"mona\.csv: line 2, byte 2: byte 0xd4 is not UTF-8 .*expected a MONA CSV"):
        build_mona(mona)
    crito = tmp_path / "Crito.txt"
    crito.write_bytes(b"\r\n".join([b"Title: Crito", b"*** START OF X ***", b"SOCRATES:  Na\xefve.", b"*** END OF X"]))
    with pytest.raises(DataError, match=r"Crito\.txt: line 3, byte 14: byte 0xef is not UTF-8 .*expected a Project "
                                        r"Gutenberg text"):
        parse_dialogue(crito)


@pytest.mark.parametrize(("row", "fields"), [("RepB,Republican,Lower taxes, fewer rules", 4), ("RepB,Republican", 2)])
def test_a_ragged_csv_row_names_the_file_and_line(tmp_path, row, fields):
    path = tmp_path / "tweets.csv"
    path.write_text(f"handle,party,text\nRepA,Democrat,Hi\n{row}\nRepC,Democrat,Bye\n", encoding="utf-8")
    with pytest.raises(DataError, match=rf"tweets\.csv: line 3 has {fields} fields; expected 3 like the header "
                                        r"\(handle,party,text\)"):
        read_tweets(path)


def test_a_ragged_mona_row_names_the_file_and_line(data):
    path = data / MONA
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[7] = lines[7].replace(",", ";", 1)  # data row 6 loses a field
    path.write_text("".join(lines), encoding="utf-8")
    with pytest.raises(DataError, match=r"MONA_From2002_dev\.csv: line 8 has 19 fields; expected 20 like the header"):
        build_mona(path)


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("rating", None, r"row 5 has rating null; expected an integer from 1 to 10"),
    ("rating", 11, r"row 5 has rating 11; expected an integer from 1 to 10"),
    ("text", None, r"row 5 has text null; expected the review as text"),
    ("label", None, r"row 5 has label null; expected 0 \(negative\) or 1 \(positive\)"),
])
def test_a_bad_imdb_value_names_the_file_and_row(data, column, value, expected):
    path = data / "imdb" / "imdb_train.parquet"
    frame = pd.read_parquet(path)
    frame[column] = frame[column].astype(object)
    frame.loc[4, column] = value
    frame.to_parquet(path, index=False)
    with pytest.raises(DataError, match=rf"imdb_train\.parquet: {expected}"):
        read_imdb(data / "imdb")


def test_a_null_tweet_text_names_the_row(tmp_path):
    path = tmp_path / "senator_tweets.parquet"
    pd.DataFrame({"date": ["d", "d"], "id": ["1", "2"], "username": ["SenA", "SenB"], "text": ["Hi", None],
                  "party": ["Democrat", "Republican"], "labels": [0, 1]}).to_parquet(path)
    with pytest.raises(DataError, match=r"senator_tweets\.parquet: data row 2 has no text or no handle \(null\)"):
        read_tweets(path)


# --- empty results are errors naming the source and why ---------------------------------------------------------


def tweets_frame(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["handle", "party", "text"])


def test_all_blank_tweets_are_an_error():
    raw = tweets_frame([("RepA", "Democrat", "   "), ("RepB", "Republican", "@RepA https://t.co/x")])
    with pytest.raises(DataError, match=r"tweets\.csv: all 2 tweets are blank once URLs and @mentions are removed "
                                        r"\(strip_urls=True\); expected tweet text"):
        prepare_political(raw, source="tweets.csv")
    with pytest.raises(DataError, match=r"all 1 tweets are blank; expected tweet text"):
        prepare_political(raw.iloc[:1], strip_urls=False, source="tweets.csv")


def test_a_single_party_is_an_error():
    raw = tweets_frame([("RepA", "Democrat", "Hi"), ("RepB", "Democrat", "Bye"), ("RepC", "Republican", " ")])
    with pytest.raises(DataError, match=r"tweets\.csv: only Democrat tweets \(\{'Democrat': 2, 'Republican': 0\}\); "
                                        r"expected tweets of both parties \(Democrat and Republican\)"):
        prepare_political(raw, source="tweets.csv")


def test_no_labelled_mona_rows_is_an_error(data):
    path = data / MONA
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame["Status"] = ["SB", "PC", "", "WM"] * (len(frame) // 4)
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"MONA_From2002_dev\.csv: no labelled rows: all 80 conditions are not "
                                        r"assessed \(Status \['', 'PC', 'SB', 'WM'\]\); expected some assessed"):
        build_mona(path)


def test_plato_with_only_narrated_dialogues_is_an_error(data):
    for name in ("Crito.txt", "Euthyphro.txt", "Meno.txt"):
        (data / "plato" / name).unlink()
    with pytest.raises(DataError, match=r"plato: no speaker-labelled turns: all 1 file\(s\) are narrated dialogues, "
                                        r"speeches or monologues \(Republic\.txt: narrated or a speech: only 0 'NAME:' "
                                        r"turns .*\); expected at least one dialogue whose speakers are labelled"):
        build_plato(data / "plato")


def write_bad(data: Path, case: str) -> None:
    """Spoil the fixture data the way `case` says (one of CLI_CASES)."""
    if case == "single party":
        lines = (data / TWEETS).read_text(encoding="utf-8").splitlines(keepends=True)
        (data / TWEETS).write_text("".join(line for line in lines if ",Republican," not in line), encoding="utf-8")
    elif case == "blank tweets":
        (data / TWEETS).write_text("handle,party,text\nRepA,Democrat,  \nRepB,Republican,https://t.co/x\n")
    elif case == "latin-1 tweets":
        (data / TWEETS).write_bytes("handle,party,text\nRepA,Democrat,Café\n".encode("latin-1"))
    elif case == "no labelled mona":
        frame = pd.read_csv(data / MONA, dtype=str, keep_default_na=False).assign(Status="SB")
        frame.to_csv(data / MONA, index=False)
    elif case == "narrated plato":
        for name in ("Crito.txt", "Euthyphro.txt", "Meno.txt"):
            (data / "plato" / name).unlink()


CLI_CASES = {
    "single party": ("political", r"house_tweets_2018\.csv: only Democrat tweets"),
    "blank tweets": ("political", r"house_tweets_2018\.csv: all 2 tweets are blank"),
    "latin-1 tweets": ("political", r"house_tweets_2018\.csv: line 2, byte 18: byte 0xe9 is not UTF-8"),
    "no labelled mona": ("mona", r"MONA_From2002_dev\.csv: no labelled rows"),
    "narrated plato": ("plato", r"plato: no speaker-labelled turns"),
}


@pytest.mark.parametrize("case", sorted(CLI_CASES))
def test_cli_exits_non_zero_with_the_message(data, tmp_path, capsys, case):
    source, message = CLI_CASES[case]
    write_bad(data, case)
    out = tmp_path / "out"
    assert main(["hydrate", "--data-dir", str(data), "--out", str(out), "--sources", source]) == 1
    printed = capsys.readouterr()
    assert printed.err.startswith("hydrate: error: ")
    assert re.search(message, printed.err), printed.err
    assert not out.exists() or not list(out.glob("*.parquet"))


def test_cli_process_prints_no_traceback(data, tmp_path):
    write_bad(data, "narrated plato")
    done = subprocess.run(
        [sys.executable, "-m", "rlxf.data", "hydrate", "--data-dir", str(data), "--out", str(tmp_path / "out"),
         "--sources", "plato"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "no speaker-labelled turns" in done.stderr
