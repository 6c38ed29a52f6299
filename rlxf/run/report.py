"""The README's "What the demo run measured" section, written from the committed `results/<profile>/` JSON files.

`python -m rlxf.run.report --profile demo` prints the section; `--write-readme` puts it between the README's markers
(`<!-- results:demo:start -->` ... `<!-- results:demo:end -->`). Every number there is a value in one of the files
it names, formatted, never typed by hand; `tests/test_report.py` fails when the README and the files disagree.
`--write-notebooks` writes each notebook's opening-box time line (between `<!-- demo-time -->` and
`<!-- /demo-time -->`) from `results/<profile>/run_summary.json` the same way (`time_line`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlxf.paths import REPO_ROOT
from rlxf.run.runlog import SUMMARY_FILES
from rlxf.run.runner import DEPENDS, NOTEBOOKS_DIR, notebook_of

SKIP_KEYS = {"data", "adapter_dirs"}  # stated once, from the manifest; paths of the machine that ran it


def markers(profile: str) -> tuple[str, str]:
    return f"<!-- results:{profile}:start -->", f"<!-- results:{profile}:end -->"


def _is_interval(key: str, value: Any) -> bool:
    return "CI" in key and isinstance(value, list) and len(value) == 2 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def fmt(value: Any, key: str = "") -> str:
    """A JSON value in one line: lists joined by " / " (a 95 % CI under a key that says "CI": "low to high"),
    objects as "key: value; ...", numbers as written (thousands separated)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.0f}" if abs(value) >= 1000 and value == int(value) else (
            f"{value:,.1f}" if abs(value) >= 1000 else repr(value))
    if isinstance(value, int):
        return f"{value:,}"
    if _is_interval(key, value):
        return f"{fmt(value[0])} to {fmt(value[1])}"
    if isinstance(value, list):
        if value and all(isinstance(v, list) for v in value):
            return " and ".join(f"[{fmt(v, key)}]" for v in value)
        return " / ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {fmt_inner(v, key)}" for k, v in value.items())
    return str(value)


def fmt_inner(value: Any, key: str = "") -> str:
    if isinstance(value, dict):
        return "(" + ", ".join(f"{k} {fmt_inner(v, key)}" for k, v in value.items()) + ")"
    if isinstance(value, list) and len(value) > 1 and not all(isinstance(v, list) for v in value):
        return "[" + fmt(value, key) + "]"
    return fmt(value, key)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path} does not exist: run `python -m rlxf.run --profile ... --publish` first") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None


def data_lines(manifest: dict) -> list[str]:
    """The counts of 01 that a reader wants, from data/manifest.json."""
    political, plato, mona = manifest.get("political", {}), manifest.get("plato", {}), manifest.get("mona", {})
    lines = [f"data source: {manifest.get('data_source', '?')}"]
    if political:
        lines.append(f"tweets: {fmt(political['raw_rows'])} raw ({fmt(political['raw_by_party'])}), "
                     f"{fmt(political['rows'])} after cleaning ({fmt(political['by_party'])}; "
                     f"{political['duplicates_dropped']} exact duplicates and {political['empty_dropped']} empty "
                     "dropped)")
    if plato:
        lines.append(f"Plato: {plato['dialogues']} speaker-labelled dialogues, {fmt(plato['turns'])} turns, "
                     f"{fmt(plato['socrates_turns'])} by Socrates")
    if mona:
        lines.append(f"MONA: {fmt(mona['raw_rows'])} rows, {fmt(mona['labelled_rows'])} labelled "
                     f"({fmt(mona['by_label'])}), {mona['not_assessed_rows']} not assessed; MET share by condition "
                     "type: " + "; ".join(f"{k} {v['met_share']} of {v['labelled']}"
                                          for k, v in mona.get("by_condition_type", {}).items()))
    for name, label in (("imdb", "IMDB reviews"), ("hh", "HH-RLHF harmless pairs")):
        if name in manifest:
            lines.append(f"{label}: {fmt(manifest[name]['rows'])}")
    return lines


def render(results_dir: Path, profile: str = "demo") -> str:
    """The markdown section (without its markers) for the files in `results_dir`."""
    run = _read(results_dir / "run_summary.json")
    headline = _read(results_dir / "headline.json")
    machine = run.get("machine", {})
    rows = ["| notebook | seconds | threads at start | precision |", "|---|---|---|---|"]
    for entry in run["notebooks"]:
        precision = entry.get("precision", "").removeprefix("precision ").split(":")[0]
        rows.append(f"| `{Path(entry['notebook']).stem}` | {fmt(round(entry['seconds']))} | "
                    f"{entry.get('threads') or '?'} | {precision} |")
    total = run.get("total_seconds", sum(e["seconds"] for e in run["notebooks"]))
    rows.append(f"| sum of the notebooks | {fmt(round(total))} | | |")
    if "wall_seconds" in run:
        wall = run["wall_seconds"]
        rows.append(f"| **wall clock**, up to {run.get('jobs')} notebooks at once | **{fmt(round(wall))}** "
                    f"({wall / 60:.1f} min) | | |")
    started, changes = set(), []
    for change in run.get("threads_timeline", []):  # a key's first entry is its start; later ones are new shares
        if change["key"] in started:
            changes.append(f"{change['key']} to {change['threads']} at {fmt(round(change['at_s']))} s")
        started.add(change["key"])
    if changes:
        rows += ["", "Shares of the cores changed while running (`threads_timeline`): " + "; ".join(changes) + "."]
    out = [
        f"Written by `python -m rlxf.run.report --profile {profile} --write-readme` from `results/{profile}/`; "
        "every number"
        " below is a value in the file named before it.",
        "",
        f"**Run** (`results/{profile}/run_summary.json`): {machine.get('cpu', '?')}, {machine.get('cores', '?')} "
        f"cores, torch {machine.get('torch', '?')}, GPU {machine.get('gpu') or 'none'}.",
        "",
        *rows,
        "",
    ]
    manifest_path = results_dir / SUMMARY_FILES[0][1]
    if manifest_path.is_file():
        out.append(f"**01** (`results/{profile}/data/manifest.json`)")
        out += [f"- {line}" for line in data_lines(_read(manifest_path))]
        out.append("")
    for key, name in SUMMARY_FILES[1:]:  # 01's manifest: data_lines above
        path = results_dir / name
        if not path.is_file():
            continue
        out.append(f"**{key}** (`results/{profile}/{name}`)")
        out += [f"- {k}: {fmt(v, k)}" for k, v in _read(path).items() if k not in SKIP_KEYS]
        out.append("")
    out.append(f"**Headline** (`results/{profile}/headline.json`)")
    out += [f"- `{k}`: {fmt(v, k)}" for k, v in headline.items()]
    return "\n".join(out).rstrip() + "\n"


def replace_section(readme: str, section: str, profile: str) -> str:
    start, end = markers(profile)
    if readme.count(start) != 1 or readme.count(end) != 1:
        raise ValueError(f"the README must hold {start} and {end} once each")
    head, rest = readme.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{section}{end}{tail}"


def section_in(readme: str, profile: str) -> str:
    start, end = markers(profile)
    if start not in readme or end not in readme:
        raise ValueError(f"the README has no {start} ... {end} section")
    return readme.split(start)[1].split(end)[0].lstrip("\n")


# ------------------------------------------------------------------------------ the notebooks' opening boxes

TIME_MARKERS = ("<!-- demo-time -->", "<!-- /demo-time -->")


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min ({fmt(round(seconds))} s)"


def _prerequisites(key: str) -> list[str]:
    """The notebooks `key` reads from, directly or through others (DEPENDS), in order."""
    found, todo = set(), [notebook_of(d) for d in DEPENDS.get(key, ())]
    while todo:
        dep = todo.pop()
        if dep not in found:
            found.add(dep)
            todo.extend(notebook_of(d) for d in DEPENDS.get(dep, ()))
    return sorted(found)


def time_line(run: dict, notebook: str, profile: str = "demo") -> str:
    """The box's time line of `notebook` (its stem, e.g. "04_lora_ppo"): its seconds in the committed run and,
    when it reads other notebooks' outputs, the sum with all of them (run one after another)."""
    entries = {Path(e["notebook"]).stem: e for e in run["notebooks"]}
    if notebook not in entries:
        return f"not measured yet: the committed {profile} run (`results/{profile}/run_summary.json`) did not run it"
    entry, by_key = entries[notebook], {stem[:2]: e for stem, e in entries.items()}
    before = _prerequisites(notebook[:2])
    missing = [k for k in before if k not in by_key]
    if missing:
        raise KeyError(f"results/{profile}/run_summary.json has no entry for notebook(s) {missing}, which "
                       f"{notebook} needs first")
    line = f"{_duration(entry['seconds'])} for this notebook"
    if before:
        total = entry["seconds"] + sum(by_key[k]["seconds"] for k in before)
        line += f", {_duration(total)} with {', '.join(before)} run first"
    machine, threads = run.get("machine", {}), entry.get("threads")
    line += f" (the committed {profile} run: {machine.get('cores', '?')}-core {machine.get('cpu', '?')} CPU"
    line += f", {threads} thread{'' if threads == 1 else 's'} at start;" if threads else ";"
    return line + f" `results/{profile}/run_summary.json`)"


def _box_source(nb: dict, path: Path) -> tuple[int, str]:
    """(index, source) of the one markdown cell holding the time markers; an error naming `path` otherwise."""
    start, end = TIME_MARKERS
    hits = [(i, "".join(c["source"])) for i, c in enumerate(nb["cells"])
            if c["cell_type"] == "markdown" and start in "".join(c["source"])]
    if len(hits) != 1 or hits[0][1].count(start) != 1 or hits[0][1].count(end) != 1:
        raise ValueError(f"{path}: expected one markdown cell with {start} ... {end} once (the opening box's time "
                         f"line), found {len(hits)} cell(s)")
    return hits[0]


def box_time(path: Path) -> str:
    """The time line currently written in the opening box of the notebook at `path`."""
    _, source = _box_source(json.loads(path.read_text()), path)
    start, end = TIME_MARKERS
    return source.split(start)[1].split(end)[0]


def write_notebook_times(results_dir: Path, profile: str = "demo", notebooks_dir: Path = NOTEBOOKS_DIR
                         ) -> list[Path]:
    """Rewrite every notebook's box time line from `results_dir/run_summary.json` -> the notebooks changed."""
    run, start, end, changed = _read(results_dir / "run_summary.json"), *TIME_MARKERS, []
    for path in sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        index, source = _box_source(nb, path)
        head, rest = source.split(start)
        new = f"{head}{start}{time_line(run, path.stem, profile)}{end}{rest.split(end, 1)[1]}"
        if new != source:
            nb["cells"][index]["source"] = new.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlxf.run.report", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="demo", help="results/<profile>/ to read (default: demo)")
    parser.add_argument("--results", type=Path, default=None, help="another results root (default: results/)")
    parser.add_argument("--write-readme", action="store_true", help="replace the README's section with it")
    parser.add_argument("--write-notebooks", action="store_true",
                        help="rewrite the time line of every notebook's opening box from run_summary.json")
    args = parser.parse_args(argv)
    results_dir = (args.results or REPO_ROOT / "results") / args.profile
    if args.write_notebooks:
        changed = write_notebook_times(results_dir, args.profile)
        print(f"rewrote the time line of {len(changed)} notebook(s) from {results_dir / 'run_summary.json'}")
        if not args.write_readme:
            return 0
    section = render(results_dir, args.profile)
    if args.write_readme:
        readme = REPO_ROOT / "README.md"
        readme.write_text(replace_section(readme.read_text(), section, args.profile))
        print(f"wrote {readme}: {len(section.splitlines())} lines from {results_dir}")
    else:
        sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
