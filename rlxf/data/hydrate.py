"""Hydration: read the raw data sets once, write clean parquet tables and a manifest; skip work already done.

Layout under `out_dir`: one parquet file per table (see `TABLES`) and `manifest.json` with the counts of every
source, the options, and the sha256 of every input file. A second call with the same inputs and options finds the
manifest, says so and returns it without rebuilding (nanoGPT's `prepare.py` idea); `force=True` rebuilds.
The options include a fingerprint of this package's source, so that a code change also rebuilds.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from rlxf.data import corpora, mona, plato, political
from rlxf.data.fixtures import FIXTURE_MARKER, write_fixtures
from rlxf.paths import REPO_ROOT, artifacts_dir, resolve_data_dir

FORMAT_VERSION = 1
"""Version of the manifest's layout."""
SOURCES = ("political", "plato", "mona", "imdb", "hh")
ALL = SOURCES
TABLES = {
    "political": "political.parquet",
    "plato_turns": "plato_turns.parquet",
    "mona": "mona.parquet",
    "imdb": "imdb.parquet",
    "hh_harmless": "hh_harmless.parquet",
}
SOURCE_TABLES = {"political": "political", "plato": "plato_turns", "mona": "mona", "imdb": "imdb", "hh": "hh_harmless"}
MANIFEST = "manifest.json"
POLITICAL_FILES = (
    "political/house_tweets_2018.csv",
    "political/senator_tweets.csv",
    "political/senator_tweets.parquet",
)
FIXED_INPUTS = {
    "mona": ("mona/MONA_From2002_dev.csv",),
    "imdb": ("imdb/imdb_train.parquet", "imdb/imdb_test.parquet"),
    "hh": ("hh-rlhf/harmless-base_test.jsonl.gz",),
}
EXPECTED = {
    "political": "political/house_tweets_2018.csv (columns handle,party,text)",
    "plato": "plato/*.txt (Project Gutenberg texts of Plato's dialogues)",
    "mona": "mona/MONA_From2002_dev.csv (the MONA conditions)",
    "imdb": "imdb/imdb_train.parquet and imdb/imdb_test.parquet",
    "hh": "hh-rlhf/harmless-base_test.jsonl.gz",
}


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def code_fingerprint() -> str:
    """sha256 over the source files of `rlxf.data`: outputs built by other code are rebuilt."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def check_sources(sources: Iterable[str]) -> list[str]:
    """The requested sources in canonical order; an unknown name is an error."""
    sources = [sources] if isinstance(sources, str) else list(sources)
    unknown = [name for name in sources if name not in SOURCES]
    if unknown or not sources:
        raise ValueError(f"sources: got {sources}; expected a non-empty subset of {list(SOURCES)}")
    return [name for name in SOURCES if name in sources]


def input_files(data_dir: Path, source: str, political_hub: bool = False) -> list[str]:
    """Relative paths of the files a source reads; a missing one is an error naming what was expected."""
    if source == "political":
        if political_hub:
            return []
        found = [name for name in POLITICAL_FILES if (data_dir / name).is_file()]
        names = found[:1]
    elif source == "plato":
        names = sorted(path.relative_to(data_dir).as_posix() for path in (data_dir / "plato").glob("*.txt"))
    else:
        names = [name for name in FIXED_INPUTS[source] if (data_dir / name).is_file()]
        names = names if len(names) == len(FIXED_INPUTS[source]) else []
    if not names:
        raise FileNotFoundError(f"{data_dir}: no input for source {source!r}; expected {EXPECTED[source]}")
    return names


def data_source(data_dir: Path) -> str:
    """'shared' for ../shared/data beside the repository, 'fixtures' for written fixtures, else the path."""
    if (data_dir / FIXTURE_MARKER).is_file():
        return "fixtures"
    shared = REPO_ROOT.parent / "shared" / "data"
    if shared.is_dir() and shared.resolve() == data_dir.resolve():
        return "shared"
    return str(data_dir)


def find_data_dir(data_dir: str | Path | None) -> Path:
    """The data directory to read: the given one (which must exist), else the real data, else fresh fixtures."""
    if data_dir is not None:
        path = Path(data_dir).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"data directory {str(path)!r} does not exist; expected a folder with {', '.join(sorted(EXPECTED))} "
                "data (e.g. ../shared/data) or one written by `python -m rlxf.data fixtures`"
            )
        return path.resolve()
    found = resolve_data_dir(None)
    if found is not None:
        return found
    fixtures = artifacts_dir() / "fixture-data"
    print(f"hydrate: no real data directory found; writing fixture data to {fixtures}")
    return write_fixtures(fixtures)


def _build(source: str, data_dir: Path, files: list[str], strip_urls: bool, seed: int) -> tuple[pd.DataFrame, dict]:
    if source == "political":
        path = data_dir / files[0] if files else None
        raw = political.read_tweets(path) if path else political.load_senator_tweets()
        where = str(path) if path else f"hub:{political.SENATOR_DATASET}"
        return political.prepare_political(raw, strip_urls=strip_urls, seed=seed, source=where)
    if source == "plato":
        return plato.build_plato(data_dir / "plato", seed=seed)
    if source == "mona":
        return mona.build_mona(data_dir / files[0], seed=seed)
    if source == "imdb":
        return corpora.read_imdb(data_dir / "imdb")
    return corpora.read_hh(data_dir / files[0])


def load_manifest(out_dir: Path) -> dict | None:
    """The stored manifest under out_dir, or None if there is none."""
    path = Path(out_dir) / MANIFEST
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def hydrate(
    data_dir: str | Path | None,
    out_dir: str | Path | None,
    *,
    sources: Iterable[str] = ALL,
    strip_urls: bool = True,
    seed: int = 0,
    force: bool = False,
    political_hub: bool = False,
) -> dict:
    """Build the tables of `sources` from data_dir into out_dir and return the manifest.

    data_dir None: the real data (`RLXF_DATA_DIR`, else ../shared/data), else fixtures written to
    `<artifacts>/fixture-data`. out_dir None: `<artifacts>/data`. political_hub=True reads the tweets from the
    Hugging Face dataset `m-newhauser/senator-tweets` (needs the internet) instead of data_dir; such runs are
    never treated as up to date, since the hub's content cannot be hashed before it is downloaded.
    """
    started = time.perf_counter()
    chosen = check_sources(sources)
    data_path = find_data_dir(data_dir)
    out_path = Path(out_dir) if out_dir is not None else artifacts_dir() / "data"
    files = {source: input_files(data_path, source, political_hub) for source in chosen}
    inputs = {name: sha256(data_path / name) for source in chosen for name in files[source]}
    options = {"sources": chosen, "strip_urls": strip_urls, "seed": seed, "political_hub": political_hub,
               "format_version": FORMAT_VERSION, "code": code_fingerprint()}
    stored = load_manifest(out_path)
    if not force and not political_hub and _up_to_date(stored, out_path, inputs, options):
        print(f"hydrate: {out_path} is up to date (same {len(inputs)} input sha256s and options); nothing to do")
        return stored
    out_path.mkdir(parents=True, exist_ok=True)
    manifest: dict = {
        "format_version": FORMAT_VERSION,
        "data_source": data_source(data_path),
        "data_dir": str(data_path),
        "options": options,
        "inputs": inputs,
        "tables": {},
    }
    if political_hub:
        manifest["inputs"][f"hub:{political.SENATOR_DATASET}"] = "not hashed (downloaded)"
    for source in chosen:
        table, stats = _build(source, data_path, files[source], strip_urls, seed)
        name = SOURCE_TABLES[source]
        table.to_parquet(out_path / TABLES[name], index=False)
        manifest["tables"][name] = {"file": TABLES[name], "rows": len(table), "columns": list(table.columns)}
        manifest[source] = stats
        print(f"hydrate: {source:9s} -> {TABLES[name]} ({len(table):,} rows)")
    # The manifest goes last, so an interrupted run is never mistaken for a finished one.
    (out_path / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"hydrate: wrote {out_path / MANIFEST} in {time.perf_counter() - started:.1f} s")
    return manifest


def _up_to_date(stored: dict | None, out_path: Path, inputs: dict, options: dict) -> bool:
    if stored is None or stored.get("inputs") != inputs or stored.get("options") != options:
        return False
    return all((out_path / TABLES[name]).is_file() for name in stored.get("tables", {}))


def read_table(out_dir: str | Path, name: str) -> pd.DataFrame:
    """One hydrated table by name (political, plato_turns, mona, imdb, hh_harmless)."""
    if name not in TABLES:
        raise ValueError(f"table {name!r} is unknown; expected one of {list(TABLES)}")
    path = Path(out_dir) / TABLES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table not found; run `python -m rlxf.data hydrate --out {out_dir}` first")
    return pd.read_parquet(path)
