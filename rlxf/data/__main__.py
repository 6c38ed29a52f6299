"""Command line: `python -m rlxf.data hydrate --data-dir DIR --out DIR`, `python -m rlxf.data fixtures --out DIR` and
`python -m rlxf.data fetch --to DIR` (the public sources, where the internet is reachable; docs/DATA.md)."""

from __future__ import annotations

import argparse
import sys

from rlxf.data import fetch as fetching
from rlxf.data.files import DataError
from rlxf.data.fixtures import write_fixtures
from rlxf.data.hub import HUB_DATASETS
from rlxf.data.hydrate import SOURCES, hydrate


def summary(manifest: dict) -> list[str]:
    """A few lines with the headline counts of a manifest."""
    lines = [f"data: {manifest['data_source']} ({manifest['data_dir']})"]
    if "political" in manifest:
        stats = manifest["political"]
        lines.append(
            f"political: {stats['raw_rows']:,} raw -> {stats['rows']:,} rows {stats['by_party']} "
            f"({stats['duplicates_dropped']} duplicates dropped; {stats['imbalance']['majority']}:"
            f"{stats['imbalance']['minority']} = {stats['imbalance']['ratio']})"
        )
    if "plato" in manifest:
        stats = manifest["plato"]
        lines.append(
            f"plato: {stats['dialogues']} dialogues, {stats['turns']:,} turns, {stats['socrates_turns']:,} by "
            f"Socrates; skipped {sorted(stats['skipped'])}"
        )
    if "mona" in manifest:
        stats = manifest["mona"]
        lines.append(
            f"mona: {stats['raw_rows']:,} rows, {stats['arrangements']} arrangements, {stats['labelled_rows']:,} "
            f"labelled {stats['by_label']}"
        )
    if "imdb" in manifest:
        lines.append(f"imdb: {manifest['imdb']['split']}")
    if "hh" in manifest:
        lines.append(f"hh: {manifest['hh']['rows']:,} pairs")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run one command."""
    parser = argparse.ArgumentParser(prog="python -m rlxf.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("hydrate", help="build the parquet tables and manifest.json")
    run.add_argument("--data-dir", default=None, help="raw data folder (default: $RLXF_DATA_DIR, ../shared/data, "
                     "else fixtures written to <artifacts>/fixture-data)")
    run.add_argument("--out", default=None, help="output folder (default: <artifacts>/data)")
    run.add_argument("--no-strip-urls", action="store_true", help="keep URLs and @mentions in the tweets")
    run.add_argument("--force", action="store_true", help="rebuild even if the outputs are up to date")
    run.add_argument("--sources", nargs="+", default=list(SOURCES), choices=SOURCES, help="sources to build")
    run.add_argument("--seed", type=int, default=0, help="seed of the train/val/test splits")
    run.add_argument("--political-hub", action="store_true",
                     help="read the tweets from the hub dataset m-newhauser/senator-tweets (same as --hub political)")
    run.add_argument("--hub", nargs="+", default=[], choices=list(HUB_DATASETS), metavar="SOURCE",
                     help="sources read from their Hugging Face datasets instead of --data-dir (needs the internet): "
                     + ", ".join(f"{name} ({dataset})" for name, (dataset, _) in HUB_DATASETS.items()))
    fixtures = commands.add_parser("fixtures", help="write the small fixture corpora")
    fixtures.add_argument("--out", required=True, help="folder to write them to")
    add_fetch_command(commands)
    args = parser.parse_args(argv)
    if args.command == "fixtures":
        print(f"fixtures: wrote {write_fixtures(args.out)}")
        return 0
    if args.command == "fetch":
        return run_fetch(args)
    try:
        manifest = hydrate(args.data_dir, args.out, sources=args.sources, strip_urls=not args.no_strip_urls,
                           seed=args.seed, force=args.force, political_hub=args.political_hub,
                           hub_sources=args.hub)
    except (DataError, FileNotFoundError) as error:
        # A bad or missing input is the user's to fix: the message says where and what; a traceback would bury it.
        print(f"hydrate: error: {error}", file=sys.stderr)
        return 1
    print("\n".join(summary(manifest)))
    return 0


def add_fetch_command(commands) -> None:
    """The `fetch` subcommand and its options."""
    fetch = commands.add_parser("fetch", help="download the public corpora into the layout hydrate reads")
    fetch.add_argument("--to", required=True, help="data folder to fill (then: hydrate --data-dir it, or set "
                       "RLXF_DATA_DIR to it)")
    fetch.add_argument("--sources", nargs="+", default=list(fetching.SOURCES), choices=fetching.SOURCES)
    fetch.add_argument("--force", action="store_true", help="download files that are already there again")
    fetch.add_argument("--imdb-url", default=fetching.IMDB_URL, help="the aclImdb_v1.tar.gz archive (or a mirror)")
    fetch.add_argument("--gutenberg-url", default=fetching.GUTENBERG_URL,
                       help="Project Gutenberg's plain-text files, <URL>/<n>/pg<n>.txt (or a mirror)")
    fetch.add_argument("--plato", nargs="+", default=[], metavar="TITLE=NUMBER",
                       help="further Gutenberg e-books, e.g. Euthyphro=NUMBER (written to plato/TITLE.txt)")
    fetch.add_argument("--political-url", default="", help="the 2018 House tweets CSV (handle,party,text); "
                       "without it the senator tweets come from the hub")
    fetch.add_argument("--political-sha256", default=None, help="expected sha256 of that CSV")
    fetch.add_argument("--mona-url", default="", help=f"the MONA conditions CSV (from {fetching.MONA_PAGE})")
    fetch.add_argument("--mona-sha256", default=None, help="expected sha256 of that CSV")


def run_fetch(args) -> int:
    """Run `fetch` with the parsed arguments; a bad source or download is one line on stderr."""
    try:
        books = {}
        for item in args.plato:
            title, sep, number = item.partition("=")
            if not sep or not number.isdigit():
                raise DataError(f"--plato {item!r}: expected TITLE=NUMBER, e.g. Euthyphro=1234")
            books[title] = int(number)
        fetching.fetch(args.to, sources=args.sources, force=args.force, imdb_url=args.imdb_url,
                       gutenberg_url=args.gutenberg_url, plato=books, political_url=args.political_url,
                       political_sha256=args.political_sha256, mona_url=args.mona_url,
                       mona_sha256=args.mona_sha256)
    except DataError as error:
        print(f"fetch: error: {error}", file=sys.stderr)
        return 1
    print(f"fetch: done; next: python -m rlxf.data hydrate --data-dir {args.to}  (or RLXF_DATA_DIR={args.to})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
