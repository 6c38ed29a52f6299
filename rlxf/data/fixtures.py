"""Small fixture corpora in the same layout and formats as ../shared/data, for tests and machines without the data.

Everything here is deterministic (no randomness, fixed gzip mtime) so the files' sha256s are stable. The texts live
in `fixture_texts/` beside this module (package data): the Plato lines are Jowett's public-domain translation
(openings of Crito, Euthyphro, Meno; the Republic's narrated opening); the tweets, MONA conditions, reviews and
conversations are written for the fixtures and attributed to no one real. This module arranges them into files.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from importlib import resources
from pathlib import Path

import pandas as pd

FIXTURE_MARKER = "FIXTURES.md"
TEXTS = resources.files("rlxf.data") / "fixture_texts"

# written file name -> (title, ebook number, release date); the excerpt (introduction and the dialogue's opening)
# is fixture_texts/plato/<name in lower case>_excerpt.txt, named apart from the full Gutenberg files of the real data
PLATO_FILES = {
    "Crito.txt": ("Crito", 1657, "March 1, 1999"),
    "Euthyphro.txt": ("Euthyphro", 1642, "January 1, 1999"),
    "Meno.txt": ("Meno", 1643, "February 1, 1999"),
    "Republic.txt": ("The Republic", 1497, "October 1, 1998"),
}
MET_CODES = {"M", "PM"}
NOT_ASSESSED_CODES = {"SB", "PC", "PA", "WM", ""}


def fixture_text(name: str) -> str:
    """One file of fixture_texts/ (e.g. "plato/crito_excerpt.txt"), as text."""
    path = TEXTS
    for part in name.split("/"):
        path = path / part
    return path.read_text(encoding="utf-8")


def fixture_json(name: str):
    """One JSON file of fixture_texts/, parsed."""
    return json.loads(fixture_text(name))


def tweet_rows() -> list[tuple[str, str, str]]:
    """60 rows (40 Democrat, 20 Republican), with one exact duplicate and one duplicate that differs by its URL."""
    tweets = fixture_json("political.json")
    rows = [(handle, "Democrat", text) for handle, texts in tweets["Democrat"].items() for text in texts]
    rows.append(rows[0])
    first_url = rows[5]
    rows.append((first_url[0], "Democrat", first_url[2].replace("Xy12AbCd9k", "Zq98WvUt3s")))
    rows += [(handle, "Republican", text) for handle, texts in tweets["Republican"].items() for text in texts]
    return rows


def gutenberg_bytes(title: str, ebook: int, release: str, body: str) -> bytes:
    """A Gutenberg-layout file as the real ones are stored: UTF-8 with a byte-order mark and CRLF line endings."""
    upper = title.upper()
    header = fixture_text("plato/gutenberg_header.txt").format(
        title=title, release=release, ebook=ebook, upper=upper, upper_short=upper.removeprefix("THE ")
    )
    text = header + body + fixture_text("plato/gutenberg_footer.txt").format(upper=upper)
    return "\ufeff".encode() + text.replace("\n", "\r\n").encode("utf-8")


def mona_rows() -> list[dict[str, str]]:
    """80 MONA rows: 10 arrangements x 8 conditions, every status code of the mapping table at least once."""
    mona = fixture_json("mona.json")
    rows, met_seen, not_met_seen = [], 0, 0
    for arrangement in mona["arrangements"]:
        year, month = arrangement["year"], arrangement["month"]
        for review, status in enumerate(arrangement["statuses"], start=1):
            # Conditions whose outcome was met come from the first pool, the others from the second, so that a
            # small classifier has something to learn; unassessed ones alternate.
            use_met = status in MET_CODES or (status in NOT_ASSESSED_CODES and review % 2 == 0)
            pool = mona["met_conditions"] if use_met else mona["not_met_conditions"]
            seen = met_seen if use_met else not_met_seen
            econ, condition = pool[seen % len(pool)]["econ"], pool[seen % len(pool)]["condition"]
            met_seen, not_met_seen = (met_seen + 1, not_met_seen) if use_met else (met_seen, not_met_seen + 1)
            test_year = year + (review + 1) // 3
            # MONA mixes date formats; keep both kinds in the fixture.
            test_date = f"{month:02d}/30/{test_year}" if review % 3 else f"{test_year}-{month:02d}-30"
            rows.append({
                "CountryName": arrangement["country"],
                "ArrID": arrangement["arr_id"],
                "ArrType": arrangement["arr_type"],
                "ApprovalDate": f"{month:02d}/15/{year}",
                "InitialEndDate": f"{month:02d}/14/{year + 3}",
                "RevisedEndDate": "NULL" if review % 4 else f"{month:02d}/14/{year + 4}",
                "IniPgmYr": str(year),
                "BoardActDate": f"{month:02d}/20/{test_year}",
                "ReviewType": f"R{(review + 1) // 2}",
                "ReviewSequence": "L   ",
                "EconDescrpt": econ,
                "Descpt": condition.format(year=test_year),
                "CondtOriginTxt": "",
                "SPC_PA_SB": ("SPC", "SB", "PA")[review % 3],
                "CondtSource": "",
                "CondtSourceTxt": "",
                "LeadInst": "",
                "TestDate": test_date,
                "Status": status,
                "Comments": "NULL" if review % 2 else f"Assessed at the review of {test_year}.",
            })
    return rows


def imdb_frame(split: str) -> pd.DataFrame:
    """40 reviews for a split (20 positive, 20 negative) in the columns of the real files: label,id,rating,text,path."""
    imdb = fixture_json("imdb.json")
    offset = 0 if split == "train" else 20
    rows = []
    for number in range(40):
        label = number % 2
        premise = imdb["premises"][offset + number // 2]
        lines = imdb["positive_lines"] if label else imdb["negative_lines"]
        rating = (7, 8, 9, 10)[number // 2 % 4] if label else (1, 2, 3, 4)[number // 2 % 4]
        text = (
            f"I watched this film about {premise} last weekend. {lines[number // 2 % 8]}<br /><br />"
            f"{lines[(number // 2 + 3) % 8]}"
        )
        review_id = offset * 10 + number
        folder = "pos" if label else "neg"
        rows.append((label, review_id, rating, text, f"aclImdb/{split}/{folder}/{review_id}_{rating}.txt"))
    return pd.DataFrame(rows, columns=["label", "id", "rating", "text", "path"])


def hh_records() -> list[dict[str, str]]:
    """40 pairs: each scenario once as a single exchange and once after an opening exchange."""
    hh = fixture_json("hh.json")
    records = []
    # (request, harmless reply, worse reply): the worse replies are unhelpful, rude or careless, never instructions.
    for number, scenario in enumerate(hh["scenarios"]):
        request, good, bad = scenario["request"], scenario["harmless"], scenario["worse"]
        for with_opening in (False, True):
            prefix = ""
            if with_opening:
                prefix = (f"\n\nHuman: {hh['openings'][number % 4]}\n\nAssistant: "
                          f"{hh['opening_replies'][number % 4]}")
            prompt = f"{prefix}\n\nHuman: {request}\n\nAssistant:"
            records.append({"chosen": f"{prompt} {good}", "rejected": f"{prompt} {bad}"})
    return records


def _csv_bytes(header: tuple[str, ...] | list[str], rows: list) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def write_fixtures(out_dir: str | Path) -> Path:
    """Write the fixture corpora under out_dir (political/, plato/, mona/, imdb/, hh-rlhf/) and return it."""
    root = Path(out_dir)
    columns = fixture_json("mona.json")["columns"]
    files = {
        "political/house_tweets_2018.csv": _csv_bytes(("handle", "party", "text"), tweet_rows()),
        "mona/MONA_From2002_dev.csv": _csv_bytes(columns, [[row[c] for c in columns] for row in mona_rows()]),
        "hh-rlhf/harmless-base_test.jsonl.gz": gzip.compress(
            "".join(json.dumps(record) + "\n" for record in hh_records()).encode("utf-8"), mtime=0
        ),
        FIXTURE_MARKER: fixture_text(FIXTURE_MARKER).encode("utf-8"),
    }
    files.update({f"plato/{name}": gutenberg_bytes(*spec, fixture_text(f"plato/{name[:-4].lower()}_excerpt.txt"))
                  for name, spec in PLATO_FILES.items()})
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    (root / "imdb").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        imdb_frame(split).to_parquet(root / "imdb" / f"imdb_{split}.parquet", index=False)
    return root.resolve()
