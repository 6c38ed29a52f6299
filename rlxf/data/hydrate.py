"""Hydration: read the raw data sets once, write clean parquet tables and a manifest; skip work already done.

Layout under `out_dir`: one parquet file per table (see `TABLES`) and `manifest.json`. The manifest records, per
table, the options it was built with (only those it depends on, `OPTIONS_READ`), the sha256 of each input file,
a fingerprint of this package's code and the sha256 of the parquet file written; beside them each source's counts.
A table is up to date only when its file is there with that sha256 and options, inputs and code all match; a
re-run rebuilds exactly the tables that are not and says why (nanoGPT's `prepare.py` idea); `force=True` rebuilds.

Every file is written atomically (a temporary file beside it, then one rename), and the manifest is rewritten
after each table: a run that fails part-way leaves the tables it finished, the old tables it did not reach, and a
manifest that describes exactly those.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from rlxf.data import corpora, hub, mona, plato, political
from rlxf.data.files import DataError, atomic_file
from rlxf.data.fixtures import FIXTURE_MARKER, write_fixtures
from rlxf.paths import REPO_ROOT, artifacts_dir, resolve_data_dir

FORMAT_VERSION = 2
"""Version of the manifest's layout (2: options, input sha256s, code and the table's sha256 recorded per table)."""
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
OPTIONS_READ = {
    "political": ("strip_urls", "seed", "political_hub"),
    "plato": ("seed",),
    "mona": ("seed",),
    "imdb": ("imdb_hub",),
    "hh": ("hh_hub",),
}
"""The options each source's table depends on; only these are recorded with the table and compared on a re-run."""
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
        raise DataError(f"sources: got {sources}; expected a non-empty subset of {list(SOURCES)}")
    return [name for name in SOURCES if name in sources]


def input_files(data_dir: Path, source: str, from_hub: bool = False) -> list[str]:
    """Relative paths of the files a source reads (none from the hub); a missing one is an error naming it."""
    if from_hub:
        return []
    if source == "political":
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


def table_options(source: str, *, strip_urls: bool, seed: int, hub_sources=()) -> dict:
    """The options a source's table is built with (see `OPTIONS_READ`), as recorded in its manifest entry."""
    given = {"strip_urls": strip_urls, "seed": seed, "political_hub": "political" in hub_sources,
             "imdb_hub": "imdb" in hub_sources, "hh_hub": "hh" in hub_sources}
    return {name: given[name] for name in OPTIONS_READ[source]}


def _build(source: str, data_dir: Path, files: list[str], options: dict) -> tuple[pd.DataFrame, dict]:
    # Only `options` reaches a builder, so a table can depend on nothing that its manifest entry does not record.
    if source == "political":
        path = data_dir / files[0] if files else None
        raw = political.read_tweets(path) if path else hub.read_tweets_hub()
        where = str(path) if path else hub.hub_input("political")
        return political.prepare_political(raw, strip_urls=options["strip_urls"], seed=options["seed"], source=where)
    if source == "plato":
        return plato.build_plato(data_dir / "plato", seed=options["seed"])
    if source == "mona":
        return mona.build_mona(data_dir / files[0], seed=options["seed"])
    if source == "imdb":
        return hub.read_imdb_hub() if options["imdb_hub"] else corpora.read_imdb(data_dir / "imdb")
    return hub.read_hh_hub() if options["hh_hub"] else corpora.read_hh(data_dir / files[0])


def load_manifest(out_dir: Path) -> dict | None:
    """The stored manifest under out_dir, or None if there is none (or it is not a readable manifest)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None  # not one this code wrote (writes are atomic): rebuild rather than trust it
    return manifest if isinstance(manifest, dict) else None


def hydrate(
    data_dir: str | Path | None,
    out_dir: str | Path | None,
    *,
    sources: Iterable[str] = ALL,
    strip_urls: bool = True,
    seed: int = 0,
    force: bool = False,
    political_hub: bool = False,
    hub_sources: Iterable[str] = (),
) -> dict:
    """Build the tables of `sources` from data_dir into out_dir and return the manifest.

    data_dir None: the real data (`RLXF_DATA_DIR`, else ../shared/data), else fixtures written to
    `<artifacts>/fixture-data`. out_dir None: `<artifacts>/data`. `hub_sources` (political, imdb, hh) are read
    from their Hugging Face datasets (`hub.HUB_DATASETS`; needs the internet or the datasets cache) instead of
    data_dir, and the manifest names the dataset as their input; such a table is never treated as up to date, since
    the hub's content cannot be hashed before it is downloaded. `political_hub=True` is `hub_sources=["political"]`.

    Each table is rebuilt unless it is up to date (see `stale_reason`); the others are left as they are. Tables of
    sources not asked for stay in the manifest while their files are unchanged and data_dir is the same.
    """
    started = time.perf_counter()
    chosen = check_sources(sources)
    data_path = find_data_dir(data_dir)
    out_path = Path(out_dir) if out_dir is not None else artifacts_dir() / "data"
    from_hub = hub.check_hub_sources(hub_sources) | ({"political"} if political_hub else set())
    files = {source: input_files(data_path, source, source in from_hub) for source in chosen}
    digests = {source: _once_each(data_path, files[source]) for source in chosen}
    files = {source: list(digests[source]) for source in chosen}
    code = code_fingerprint()
    wanted = {
        source: {
            "options": table_options(source, strip_urls=strip_urls, seed=seed, hub_sources=from_hub),
            "inputs": digests[source] or {hub.hub_input(source): "not hashed (downloaded)"},
            "code": code,
        }
        for source in chosen
    }
    stored = load_manifest(out_path)
    manifest, dropped = _still_valid(stored, data_path, out_path)
    for name, why in dropped.items():  # a table not rebuilt now must not outlive its manifest entry
        rebuilt = any(SOURCE_TABLES[source] == name for source in chosen)
        if not rebuilt and (out_path / TABLES[name]).is_file():
            (out_path / TABLES[name]).unlink()
            print(f"hydrate: removed {TABLES[name]} ({why}; its source is not hydrated in this run)")
    stale = {}
    for source in chosen:
        name = SOURCE_TABLES[source]
        reason = "forced" if force else dropped.get(name) or stale_reason(manifest["tables"].get(name), wanted[source])
        if reason is None:
            entry = manifest["tables"][SOURCE_TABLES[source]]
            print(f"hydrate: {source:9s} -> {entry['file']} is up to date ({entry['rows']:,} rows)")
        else:
            stale[source] = reason
    if not stale:
        if manifest != stored:
            _write_manifest(out_path, manifest)
        inputs = sum(len(wanted[source]["inputs"]) for source in chosen)
        print(f"hydrate: {out_path} is up to date (same {inputs} input sha256s and options); nothing to do")
        return manifest
    out_path.mkdir(parents=True, exist_ok=True)
    on_disk = set((stored or {}).get("tables", {}))
    for source, reason in stale.items():
        table, stats = _build(source, data_path, files[source], wanted[source]["options"])
        name = SOURCE_TABLES[source]
        path = out_path / TABLES[name]
        with atomic_file(path) as tmp:
            table.to_parquet(tmp, index=False)
            digest = sha256(tmp)
            manifest["tables"].pop(name, None)
            manifest.pop(source, None)
            # The manifest on disk must not describe the old table while the new file takes its place.
            if name in on_disk:
                _write_manifest(out_path, manifest)
                on_disk = set(manifest["tables"])
        manifest["tables"][name] = {
            "source": source, "file": TABLES[name], "rows": len(table), "columns": list(table.columns),
            "sha256": digest, **wanted[source],
        }
        manifest[source] = stats
        _write_manifest(out_path, manifest)
        on_disk = set(manifest["tables"])
        print(f"hydrate: {source:9s} -> {TABLES[name]} ({len(table):,} rows; built: {reason})")
    print(f"hydrate: wrote {out_path / MANIFEST} in {time.perf_counter() - started:.1f} s")
    return manifest


def stale_reason(entry: dict | None, wanted: dict) -> str | None:
    """Why a table must be (re)built, or None when its entry records the same options, input sha256s and code."""
    if entry is None:
        return "no table recorded yet"
    if any(digest.startswith("not hashed") for digest in wanted["inputs"].values()):
        return "its input is downloaded, so it cannot be compared"
    if entry.get("options") != wanted["options"]:
        old = entry.get("options") or {}
        changed = [f"{key} {old.get(key)!r} -> {value!r}" for key, value in wanted["options"].items()
                   if old.get(key) != value]
        return f"options changed: {', '.join(changed)}"
    if entry.get("inputs") != wanted["inputs"]:
        old = entry.get("inputs") or {}
        changed = sorted(name for name in {*old, *wanted["inputs"]} if old.get(name) != wanted["inputs"].get(name))
        return f"input changed: {', '.join(changed)}"
    if entry.get("code") != wanted["code"]:
        return "the code of rlxf.data changed"
    return None


def _still_valid(stored: dict | None, data_path: Path, out_path: Path) -> tuple[dict, dict[str, str]]:
    """The stored manifest less the tables that can no longer be trusted, and why each of those was dropped.

    A manifest describes the tables of one data directory; a table's entry is kept only while its file is there
    with the sha256 recorded when it was written.
    """
    manifest = {"format_version": FORMAT_VERSION, "data_source": data_source(data_path), "data_dir": str(data_path),
                "inputs": {}, "tables": {}}
    dropped: dict[str, str] = {}
    if stored is None:
        return manifest, dropped
    if stored.get("format_version") != FORMAT_VERSION:
        why = f"the manifest has format {stored.get('format_version')!r}, expected {FORMAT_VERSION}"
        return manifest, dict.fromkeys(TABLES, why)
    if stored.get("data_dir") != str(data_path):
        return manifest, dict.fromkeys(TABLES, f"the tables were built from another data_dir, {stored.get('data_dir')}")
    for name, entry in stored.get("tables", {}).items():
        source, path = entry.get("source"), out_path / TABLES.get(name, "?")
        if name not in TABLES or source not in stored:
            continue
        if not path.is_file():
            dropped[name] = f"{path.name} is missing"
        elif sha256(path) != entry.get("sha256"):
            dropped[name] = f"{path.name} differs from the file this manifest recorded"
        else:
            manifest["tables"][name] = entry
            manifest[source] = stored[source]
    manifest["inputs"] = _all_inputs(manifest)
    return manifest, dropped


def _once_each(data_path: Path, names: list[str]) -> dict[str, str]:
    """{name: sha256} of a source's input files, each content once: a copy of a file (same sha256) is read once,
    with a message (a duplicated dialogue would double its turns and put the same ones in train and test)."""
    digests: dict[str, str] = {}
    first: dict[str, str] = {}
    for name in names:
        digest = sha256(data_path / name)
        if digest in first:
            print(f"hydrate: {name} has the same content as {first[digest]}: read once")
            continue
        first[digest] = name
        digests[name] = digest
    return digests


def _all_inputs(manifest: dict) -> dict:
    return {name: digest for entry in manifest["tables"].values() for name, digest in entry["inputs"].items()}


def _write_manifest(out_path: Path, manifest: dict) -> None:
    manifest["inputs"] = _all_inputs(manifest)
    out_path.mkdir(parents=True, exist_ok=True)
    with atomic_file(out_path / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_table(out_dir: str | Path, name: str) -> pd.DataFrame:
    """One hydrated table by name (political, plato_turns, mona, imdb, hh_harmless)."""
    if name not in TABLES:
        raise DataError(f"table {name!r} is unknown; expected one of {list(TABLES)}")
    path = Path(out_dir) / TABLES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table not found; run `python -m rlxf.data hydrate --out {out_dir}` first")
    return pd.read_parquet(path)
