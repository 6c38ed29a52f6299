"""Fetch the public corpora from where they live online into the layout `hydrate` reads (`docs/DATA.md`).

    python -m rlxf.data fetch --to DIR [--sources imdb hh plato political mona] [--political-url URL] [--mona-url URL]

Where each source comes from (the internet is needed; nothing here runs implicitly):
- imdb: the Large Movie Review Dataset's archive from Stanford (`IMDB_URL`; the hub's copy has no star ratings,
  which the IMDB table keeps), unpacked into `imdb/imdb_{train,test}.parquet` (label, id, rating, text, path).
- hh: `Anthropic/hh-rlhf` (harmless-base, test split) through `datasets` -> `hh-rlhf/harmless-base_test.jsonl.gz`.
- plato: Project Gutenberg e-books by number (`PLATO_BOOKS`, Jowett's translations) -> `plato/<Title>.txt`.
- political: the 2018 House tweets from a URL you give (`political_url`: a CSV with handle,party,text), else the
  senator tweets `m-newhauser/senator-tweets` through `datasets` -> `political/senator_tweets.parquet`.
- mona: the IMF's MONA conditions from a URL you give (`mona_url`: the CSV) -> `mona/MONA_From2002_dev.csv`;
  without one, mona is not fetched and the report says how to get it.

Every download goes to a temporary file beside its target and is renamed into place only when it is complete (the
server's Content-Length received, and the sha256 or size matching where one is given), so a failed or interrupted
fetch leaves no half file, and a file already in place is complete: it is skipped (`force=True` fetches again).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tarfile
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path

import pandas as pd

from rlxf.data import hub
from rlxf.data.files import DataError, atomic_file

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
"""Maas et al. (2011)'s archive: aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt"""
IMDB_ROWS = {"train": 25_000, "test": 25_000}
HH_ROWS = 2_312
"""pairs in HH-RLHF's harmless-base test split"""
GUTENBERG_URL = "https://www.gutenberg.org/cache/epub"
"""Project Gutenberg's plain-text files: <GUTENBERG_URL>/<n>/pg<n>.txt"""
PLATO_BOOKS = {"Republic": 1497, "Apology": 1656, "Crito": 1657, "Phaedo": 1658, "Symposium": 1600, "Meno": 1643,
               "Gorgias": 1672}
"""Project Gutenberg e-book numbers of Jowett's translations (more with `plato={"Title": number}`)"""
SOURCES = ("imdb", "hh", "plato", "political", "mona")
TARGETS = {
    "imdb": ("imdb/imdb_train.parquet", "imdb/imdb_test.parquet"),
    "hh": ("hh-rlhf/harmless-base_test.jsonl.gz",),
    "political": ("political/house_tweets_2018.csv",),
    "political_hub": ("political/senator_tweets.parquet",),
    "mona": ("mona/MONA_From2002_dev.csv",),
}
MONA_PAGE = "https://www.imf.org/external/np/pdr/mona/index.aspx"
"""the IMF's MONA database page (the CSV to give as mona_url is downloaded from there)"""
CHUNK = 1 << 16


@dataclass(frozen=True)
class Download:
    """One file to download: where from, where to (relative to the data folder), and what it must be if fixed."""

    url: str
    target: str
    sha256: str | None = None
    """hex sha256 of the complete file, where the file is fixed; None: not checked"""
    size: int | None = None
    """bytes of the complete file, where the file is fixed; None: not checked"""


def download(item: Download, data_dir: str | Path, *, force: bool = False, timeout: float = 60.0) -> str:
    """Fetch `item` into `data_dir / item.target` -> "downloaded" or "skipped (already there)".

    A 404 or other HTTP error, a connection that ends before the announced Content-Length, or a file whose size or
    sha256 is not the one given is a `DataError` naming the URL; nothing is left at the target or beside it.
    """
    path = Path(data_dir) / item.target
    if path.is_file() and not force:
        if item.sha256 is None and item.size is None:
            return "skipped (already there)"  # writes are atomic: a file in place is a complete one
        problem = _check_file(path, item)
        if problem is None:
            return "skipped (already there)"
        print(f"fetch: {path} is there but {problem}; downloading it again")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        _stream(item.url, tmp, timeout)
        problem = _check_file(tmp, item)
        if problem is not None:
            raise DataError(f"{item.url}: the download {problem}; {path} was not written")
    return "downloaded"


def _stream(url: str, out: Path, timeout: float) -> None:
    """Copy the body at `url` into `out`; an HTTP error or a short body is a DataError naming the URL."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(out, "wb") as stream:
            announced = response.headers.get("Content-Length")
            received = 0
            for block in iter(lambda: response.read(CHUNK), b""):
                stream.write(block)
                received += len(block)
    except urllib.error.HTTPError as error:
        raise DataError(f"{url}: HTTP {error.code} {error.reason}; check the URL (nothing was written)") from None
    except (urllib.error.URLError, HTTPException, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"{url}: the download failed ({type(error).__name__}: {reason}); nothing was written, "
                        "run fetch again") from None
    if announced is not None and received != int(announced):
        raise DataError(f"{url}: the connection ended after {received:,} of {int(announced):,} bytes; nothing was "
                        "written, run fetch again")


def _check_file(path: Path, item: Download) -> str | None:
    """Why the file at `path` is not `item`'s complete file, or None."""
    size = path.stat().st_size
    if item.size is not None and size != item.size:
        return f"has {size:,} bytes, expected {item.size:,}"
    if item.sha256 is not None:
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != item.sha256.lower():
            return f"has sha256 {digest.hexdigest()}, expected {item.sha256.lower()}"
    return None


def plato_downloads(books: dict[str, int], base_url: str = GUTENBERG_URL) -> list[Download]:
    """One download per Gutenberg e-book number, to `plato/<Title>.txt`; titles are plain words."""
    items = []
    for title, number in books.items():
        if not re.fullmatch(r"[A-Za-z][A-Za-z_-]*", str(title)):
            raise DataError(f"plato: the title {title!r} must be a plain word (it names plato/<title>.txt)")
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise DataError(f"plato: {title} has e-book number {number!r}; expected a Project Gutenberg number >= 1")
        items.append(Download(f"{base_url.rstrip('/')}/{number}/pg{number}.txt", f"plato/{title}.txt"))
    return items


def imdb_from_archive(archive: Path, data_dir: Path, where: str | None = None) -> None:
    """aclImdb_v1.tar.gz -> imdb/imdb_{train,test}.parquet (label, id, rating, text, path); rows checked: IMDB_ROWS.

    `where` names the archive in errors (its URL; default: its path).
    """
    where = where or str(archive)
    found: dict[str, list[dict]] = {split: [] for split in IMDB_ROWS}
    pattern = re.compile(r"aclImdb/(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                match = pattern.search(member.name)
                if match is None or not member.isfile():
                    continue
                split, polarity, review_id, rating = match.groups()
                text = tar.extractfile(member).read().decode("utf-8")
                found[split].append({"label": int(polarity == "pos"), "id": int(review_id), "rating": int(rating),
                                     "text": text, "path": match.group(0).removeprefix("aclImdb/")})
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as error:
        raise DataError(f"{where}: not a readable aclImdb archive ({error})") from None
    for split, rows in found.items():
        if len(rows) != IMDB_ROWS[split]:
            raise DataError(f"{where}: {len(rows):,} {split} reviews under aclImdb/{split}/{{pos,neg}}/; expected "
                            f"{IMDB_ROWS[split]:,}")
    for split, rows in found.items():
        frame = pd.DataFrame(rows).sort_values("path", ignore_index=True)
        with atomic_file(data_dir / "imdb" / f"imdb_{split}.parquet") as tmp:
            frame.to_parquet(tmp, index=False)


def hh_from_hub(data_dir: Path) -> None:
    """HH-RLHF harmless-base test pairs through `datasets` -> hh-rlhf/harmless-base_test.jsonl.gz, rows checked."""
    splits = hub.load("hh")
    if hub.HH_SPLIT not in splits:
        raise DataError(f"{hub.hub_input('hh')}: no {hub.HH_SPLIT!r} split; found {list(splits)}")
    records = [{"chosen": row["chosen"], "rejected": row["rejected"]} for row in splits[hub.HH_SPLIT]]
    if len(records) != HH_ROWS:
        raise DataError(f"{hub.hub_input('hh')} {hub.HH_SPLIT}: {len(records):,} pairs; expected {HH_ROWS:,}")
    body = "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")
    path = data_dir / TARGETS["hh"][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_bytes(gzip.compress(body, mtime=0))


def senators_from_hub(data_dir: Path) -> None:
    """`m-newhauser/senator-tweets` (all splits) through `datasets` -> political/senator_tweets.parquet."""
    from datasets import concatenate_datasets

    splits = hub.load("political")
    frame = concatenate_datasets([splits[name] for name in sorted(splits)]).to_pandas()
    path = data_dir / TARGETS["political_hub"][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        frame.to_parquet(tmp, index=False)


def fetch(to: str | Path, *, sources: Iterable[str] = SOURCES, force: bool = False, imdb_url: str = IMDB_URL,
          gutenberg_url: str = GUTENBERG_URL, plato: dict[str, int] | None = None, political_url: str = "",
          political_sha256: str | None = None, mona_url: str = "", mona_sha256: str | None = None,
          timeout: float = 60.0) -> dict[str, str]:
    """Fetch `sources` into the folder `to` (see the module docstring) -> {source: what happened}.

    A source whose files are all there already is skipped (`force`: fetched again); a download error stops the
    fetch with a `DataError` naming the URL, leaving the files fetched before it in place.
    """
    sources = [sources] if isinstance(sources, str) else list(sources)
    unknown = [name for name in sources if name not in SOURCES]
    if unknown or not sources:
        raise DataError(f"sources: got {sources}; expected a non-empty subset of {list(SOURCES)}")
    root = Path(to)
    root.mkdir(parents=True, exist_ok=True)
    report = {}
    for source in (name for name in SOURCES if name in sources):
        url, digest = {"political": (political_url, political_sha256), "mona": (mona_url, mona_sha256)}.get(
            source, ("", None))
        if source == "plato":
            books = {**PLATO_BOOKS, **(plato or {})}
            done = [download(item, root, force=force, timeout=timeout)
                    for item in plato_downloads(books, gutenberg_url)]
            fetched = done.count("downloaded")
            report[source] = f"{fetched} downloaded, {len(done) - fetched} already there ({len(books)} e-books)"
        elif url:
            report[source] = download(Download(url, TARGETS[source][0], sha256=digest), root, force=force,
                                      timeout=timeout)
        elif source == "mona":
            report[source] = f"not fetched: give mona_url (--mona-url), the MONA CSV from {MONA_PAGE}"
        else:
            key = "political_hub" if source == "political" else source
            if not force and all((root / name).is_file() for name in TARGETS[key]):
                report[source] = "skipped (already there)"
            else:
                {"imdb": lambda: _imdb(imdb_url, root, timeout), "hh": lambda: hh_from_hub(root),
                 "political": lambda: senators_from_hub(root)}[source]()
                report[source] = "downloaded"
        print(f"fetch: {source:9s} {report[source]}")
    return report


def _imdb(url: str, root: Path, timeout: float) -> None:
    """Download the aclImdb archive beside the tables, unpack it into the two parquet files, remove the archive."""
    archive = root / "imdb" / ".aclImdb_v1.tar.gz.part"
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        _stream(url, archive, timeout)
        imdb_from_archive(archive, root, where=url)
    finally:
        archive.unlink(missing_ok=True)
