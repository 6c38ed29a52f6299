"""The runner's records: what a run is (`Profile`, `NotebookRun`), `run_summary.json` (merged under a lock: notebooks
run side by side with `--jobs`), `headline.json`, and `publish` to `results/<profile>/` (with the executed notebooks)
and the profile's figures folder. `rlxf.run` re-exports them."""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlxf.paths import REPO_ROOT


class RunnerError(RuntimeError):
    """A run that cannot start or did not finish; the message says which notebook, cell or parameter."""


@dataclass
class Profile:
    """A profile YAML read and checked: where things go and which parameters each notebook gets."""

    name: str
    figures_dir: Path
    artifacts_dir: Path
    params: dict[str, Any]
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    shared: dict[str, Any] = field(default_factory=dict)
    """parameters several notebooks declare (e.g. the party classifier's settings): each gets those it declares"""
    publish_figures_dir: Path | None = None
    """where `--publish` copies the run's figures (the committed `figures/` for the demo); None: nowhere"""


@dataclass
class NotebookRun:
    """One executed notebook: what ran, for how long, what it wrote."""

    key: str
    notebook: str
    seconds: float
    figures: list[str]
    output: str
    status: str = "ok"
    precision: str = ""
    """the compute precision chosen from the notebook's `dtype` parameter on this machine, and why"""
    threads: int = 0
    """CPU threads the notebook's kernel ran with (OMP_NUM_THREADS when set, else torch's default)"""


CPU_FLAGS_OF_NOTE = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")  # what the matmul kernels can use


def machine() -> dict[str, Any]:
    """What the timings ran on: CPU model (and, on Linux x86, its family and model numbers, which tell CPU generations
    apart that share a name, e.g. "AMD EPYC" on Zen 4 and Zen 5, and the matmul-relevant flags), cores, torch
    threads, python and torch versions, GPU if any."""
    cpu, fields = platform.processor() or platform.machine(), {}
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                key, _, value = line.partition(":")
                if not value or key.strip() in fields:
                    continue
                fields[key.strip()] = value.strip()
                if key.strip() == "flags":
                    break
    except OSError:
        pass
    cpu = fields.get("model name", cpu)
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    described = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
                 "python": platform.python_version(), "torch": torch.__version__}
    if "cpu family" in fields:
        flags = set(fields.get("flags", "").split())
        described.update(cpu_vendor=fields.get("vendor_id"), cpu_family=int(fields["cpu family"]),
                         cpu_model=int(fields.get("model", "0")),
                         cpu_flags=[flag for flag in CPU_FLAGS_OF_NOTE if flag in flags])
    return described


def _precision(params: dict[str, Any]) -> str:
    """The precision rlxf.lm.precision chooses here for a notebook's `dtype` parameter ("" when it declares none)."""
    if "dtype" not in params:
        return ""
    from rlxf.lm.precision import precision

    return str(precision(params["dtype"]))


def read_summary(artifacts_dir: Path) -> dict[str, Any]:
    """The run summary of a profile's artifacts directory ({"notebooks": [], ...} when there is none yet)."""
    path = Path(artifacts_dir) / "run_summary.json"
    if not path.is_file():
        return {"notebooks": []}
    try:
        summary = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RunnerError(f"{path} is not valid JSON ({err}); move it aside to start a new summary") from None
    if not isinstance(summary, dict) or not isinstance(summary.get("notebooks"), list):
        return {"notebooks": []}  # another shape: a new summary starts (the writer keeps the old file aside)
    return summary


@contextmanager
def _summary_lock(artifacts_dir: Path):
    """Notebooks running at once (--jobs) each merge into run_summary.json: one at a time."""
    import fcntl

    artifacts_dir.mkdir(parents=True, exist_ok=True)
    with open(artifacts_dir / ".run_summary.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_summary(profile: Profile, runs: list[NotebookRun], wall: dict[str, Any] | None = None) -> None:
    """Merge this run into run_summary.json: one entry per notebook, a failed re-run keeps the last good one.
    `wall`: {"wall_seconds", "jobs", "threads_timeline"} of a --jobs run, whose wall time is then the headline's
    total; the timeline lists every change of a notebook's thread share ({"key", "threads", "at_s"})."""
    with _summary_lock(profile.artifacts_dir):
        _merge_summary(profile, runs, wall)


def _keep_unknown_summary(artifacts_dir: Path) -> None:
    """A run_summary.json of another shape (an older rlxf, another tool) is moved aside, never overwritten."""
    path = Path(artifacts_dir) / "run_summary.json"
    if not path.is_file():
        return
    summary = json.loads(path.read_text())  # read_summary already named a file that is not JSON
    if isinstance(summary, dict) and isinstance(summary.get("notebooks"), list):
        return
    kept = path.with_name(f"run_summary.unknown-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json")
    path.replace(kept)
    print(f"[rlxf.run] {path} has another shape (no 'notebooks' list): kept as {kept.name}, a new summary starts",
          flush=True)


def _merge_summary(profile: Profile, runs: list[NotebookRun], wall: dict[str, Any] | None) -> None:
    read_summary(profile.artifacts_dir)  # a file that is not JSON stops here, naming it
    _keep_unknown_summary(profile.artifacts_dir)
    summary = read_summary(profile.artifacts_dir)
    entries = {entry["key"]: entry for entry in summary["notebooks"]}
    for run in runs:
        previous = entries.get(run.key)
        if run.status == "ok" or previous is None or previous.get("status") != "ok":
            entries[run.key] = dict(run.__dict__)
        else:
            previous["last_failure"] = {"seconds": run.seconds, "output": run.output}
    ok = [entry for entry in entries.values() if entry["status"] == "ok"]
    summary.update(profile=profile.name, machine=machine(), notebooks=[entries[k] for k in sorted(entries)],
                   total_seconds=round(sum(entry["seconds"] for entry in ok), 1))
    if wall is not None:
        summary.update(wall_seconds=round(wall["wall_seconds"], 1), jobs=wall["jobs"],
                       threads_timeline=wall.get("threads_timeline", []))
    elif runs:  # a sequential (re-)run: an earlier --jobs wall time no longer describes the summary
        for key in ("wall_seconds", "jobs", "threads_timeline"):
            summary.pop(key, None)
    _write_json(profile.artifacts_dir / "run_summary.json", summary)
    _write_headline(profile, summary.get("wall_seconds", summary["total_seconds"]))


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


def _merge(into: dict[str, Any], more: dict[str, Any], where: str) -> None:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, f"{where}.{key}")
        elif key in into and into[key] != value:
            raise RunnerError(f"headline key {where}.{key} is written by two notebooks with different values")
        else:
            into[key] = value


def _write_headline(profile: Profile, total_seconds: float) -> None:
    """Merge the notebooks' headline numbers (`<artifacts>/headline/NN.json`, rlxf.run.notebook.record_headline) into
    `<artifacts>/headline.json`, with the total seconds of the notebooks in run_summary.json."""
    headline: dict[str, Any] = {}
    for part in sorted((profile.artifacts_dir / "headline").glob("*.json")):
        try:
            _merge(headline, json.loads(part.read_text()), part.stem)
        except json.JSONDecodeError as err:
            raise RunnerError(f"{part} is not valid JSON ({err}); re-run its notebook") from None
    headline[f"total_{profile.name}_seconds"] = total_seconds
    _write_json(profile.artifacts_dir / "headline.json", headline)


# The notebooks' own JSON summaries (01's data manifest, 02-08's summaries), published beside the run's.
SUMMARY_FILES = (("01", "data/manifest.json"), ("02", "adapters/summary.json"), ("03", "rewards/summary.json"),
                 ("04", "ppo/summary.json"), ("05", "selfplay/summary.json"), ("06", "selfplay/convergence.json"),
                 ("07", "evaluation/summary.json"), ("08", "preference/summary.json"))
"""(notebook, summary path under artifacts/<profile>/): what `publish` copies and `rlxf.run.report` renders"""
NOTEBOOK_SUMMARIES = tuple(path for _, path in SUMMARY_FILES)


def publish(profile: Profile, results_dir: Path | None = None) -> Path:
    """Record the run in `results/<profile>/`, what every number in the README is traced to: run_summary.json,
    headline.json and the notebooks' summaries that exist (NOTEBOOK_SUMMARIES, under the same relative paths), and
    every notebook that ran to the end, executed, in `notebooks/` (rlxf.run.executed: outputs and figures kept, widget
    state and this machine's paths not; under 20 MB). The figures of those notebooks go to the profile's
    `publish_figures_dir` (the committed `figures/`). A failed notebook is not published. Never weights or tables."""
    from rlxf.run.executed import publish_notebooks

    target = Path(results_dir or REPO_ROOT / "results") / profile.name
    for name in ("run_summary.json", "headline.json"):
        if not (profile.artifacts_dir / name).is_file():
            raise RunnerError(f"nothing to publish: {profile.artifacts_dir / name} does not exist (run the notebooks "
                              "first)")
    summary = json.loads((profile.artifacts_dir / "run_summary.json").read_text())
    finished = [entry for entry in summary["notebooks"] if entry.get("status") == "ok"]
    publish_notebooks([Path(entry["output"]) for entry in finished], target / "notebooks")
    if profile.publish_figures_dir is not None:
        profile.publish_figures_dir.mkdir(parents=True, exist_ok=True)
        for entry in finished:
            for figure in entry["figures"]:
                shutil.copy2(profile.figures_dir / figure, profile.publish_figures_dir / figure)
    for name in NOTEBOOK_SUMMARIES:
        source = profile.artifacts_dir / name
        if source.is_file():
            _write_json(target / name, json.loads(source.read_text()))
    for entry in summary["notebooks"]:  # the executed notebooks' paths on this machine mean nothing elsewhere
        entry["output"] = Path(entry["output"]).name
    _write_json(target / "run_summary.json", summary)
    _write_json(target / "headline.json", json.loads((profile.artifacts_dir / "headline.json").read_text()))
    return target


def summary_table(runs: list[NotebookRun]) -> str:
    """A plain-text table: notebook, status, seconds, figures written."""
    rows = [("notebook", "status", "seconds", "figures written")]
    rows += [(r.notebook, r.status, f"{r.seconds:.1f}", ", ".join(r.figures) or "-") for r in runs]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row)) for row in rows
    )
