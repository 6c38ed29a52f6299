"""Batch runner: execute the numbered notebooks headless with papermill, parameters from a profile YAML.

    python -m rlxf.run --profile {smoke,demo,gpu} [--only 01 03] [-p key=value] [-p 02:key=value] [--dry-run] [--quiet]

Papermill only warns about parameters a notebook does not declare; here that is an error, raised before any
notebook runs. The run stops at the first failing notebook and names the notebook and the cell. Executed
notebooks and figures are kept under the profile's artifacts directory; a summary table is printed and saved as JSON;
`--publish` copies the record to `results/<profile>/` and the figures to the profile's `publish_figures_dir`.
A notebook reads its parameters from `configs/<profile>.yaml` itself (its parameters cell leaves them None); papermill
injects the profile's name, seed and directories and what differs from the profile (`-p`, a dry run's sizes).
While a notebook runs, a bar shows its cell i/N and the time elapsed (`--quiet`: none). Notebooks run on the
Jupyter kernel `rlxf` (`make lab` registers it for the venv) when there is one, else on `python3`.

`--jobs N` runs up to N notebooks at once, each in its own `python -m rlxf.run --only NN` process, a notebook as
soon as the notebooks it reads from (`DEPENDS`) have finished or, for "NN:stage", have written what it reads
(`<artifacts>/ready/NN.stage`), the longest chain first (`LAUNCH_ORDER`); the cores are split between the notebooks
running at once (`OMP_NUM_THREADS` at the start), and a notebook that runs alone gets them all. When a notebook
finishes, the ones still running get its cores at their next long loop (a file per notebook,
`<artifacts>/threads/NN`, read by `rlxf.infra.threads.follow_thread_budget`). On a 2-core CPU two one-thread
notebooks do more work per second than one two-thread notebook (`benchmarks/threads.py` measures it).
run_summary.json then holds each notebook's own seconds (overlapping), its threads at the start, every change of a
share (`threads_timeline`) and the run's `wall_seconds`, which the headline's total is.

`--dry-run` runs a profile's notebooks on CPU in minutes: its parameters, except that every number or list (sizes,
steps, rates), `data_dir`, `dtype` and `report_to` (no tracker) take the smoke profile's value and the models become
the tiny ones; outputs go to `artifacts/<profile>-dry-run/`.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rlxf.paths import REPO_ROOT, output_path
from rlxf.run.params import check_types, load_yaml, parse_overrides
from rlxf.run.runlog import (
    NotebookRun,
    Profile,
    RunnerError,
    _precision,
    _write_summary,
    publish,
    read_summary,
    summary_table,
)

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
CONFIGS_DIR = REPO_ROOT / "configs"
PROFILES = ("smoke", "demo", "gpu")
PROFILE_KEYS = ("publish_figures_dir", "artifacts_dir", "params", "shared", "notebooks")
# Parameters the runner passes to every notebook; the house style (../shared/STYLE.md) asks every notebook to
# declare them.
COMMON_PARAMS = ("profile", "seed", "data_dir", "artifacts_dir", "figures_dir")
_NOTEBOOK_NAME = re.compile(r"^(\d\d)_[a-z0-9_]+\.ipynb$")
KERNEL = "rlxf"
# --dry-run: the tiny model that stands in for each model parameter, and the smoke values taken whatever their type.
DRY_RUN_MODELS = {"policy_model": "tiny-llama", "judge_model": "tiny-llama", "encoder": "tiny-bert"}
DRY_RUN_FROM_SMOKE = ("data_dir", "dtype", "report_to")  # a dry run tracks to nowhere unless -p asks


# Which notebooks' outputs each notebook reads (artifacts/<profile>/...): the order `--jobs` keeps. "NN" waits for
# notebook NN to finish; "NN:stage" only until NN has written what is read (it calls
# rlxf.run.notebook.mark_ready(artifacts, "NN", "stage") there), so the rest of NN runs beside the reader.
DEPENDS = {
    "00": (),                      # the quickstart hydrates its own two tables
    "01": (),
    "02": ("01",),                 # tables
    "03": ("01", "02:party"),      # tables; 02's party classifiers (rewards/party, rewards/party-linear)
    "04": ("01", "02", "03:rewards"),  # 02's Socrates adapter; 03's MONA and sentiment rewards
    "05": ("01", "02"),            # 02's party adapters and classifier; tweets
    "06": ("02", "05"),            # 05's self-play runs; the party classifier
    "07": ("01", "02", "03", "04:adapters"),  # 04's RLXF and Socrates adapters; 03's classifiers
    "08": ("01", "02", "03:rewards"),  # HH pairs, tweets; the party and sentiment classifiers
}
# When more notebooks are ready than there are free jobs, the longest chain goes first (by its last timings:
# 02 -> 03 -> 04 -> 07 is about two thirds of the demo's CPU time); the others fill the second job.
LAUNCH_ORDER = ("01", "02", "03", "04", "07", "05", "08", "06", "00")
# Scheduling only (no outputs read): the quickstart starts once 02 has finished, so that it does not take the second
# job while 02 and 03 (which starts while 02 runs) open the long chain.
START_AFTER = {"00": ("02",)}


def notebook_of(dependency: str) -> str:
    """The notebook a DEPENDS entry names: "04" of "04" and of "04:adapters"."""
    return dependency.split(":", 1)[0]


def ready_marker(artifacts_dir: str | Path, notebook: str, stage: str) -> Path:
    """The file by which notebook `notebook` says it has reached `stage` (rlxf.run.notebook.mark_ready)."""
    return Path(artifacts_dir) / "ready" / f"{notebook}.{stage}"


def discover_notebooks(notebooks_dir: Path = NOTEBOOKS_DIR) -> dict[str, Path]:
    """The numbered notebooks `NN_name.ipynb`, keyed by their number, in order."""
    found: dict[str, Path] = {}
    for path in sorted(notebooks_dir.glob("*.ipynb")):
        match = _NOTEBOOK_NAME.match(path.name)
        if match is None:
            continue
        if match.group(1) in found:
            raise RunnerError(
                f"two notebooks share the number {match.group(1)}: {found[match.group(1)].name}, {path.name}"
            )
        found[match.group(1)] = path
    return found


def load_profile(name: str, configs_dir: Path = CONFIGS_DIR) -> Profile:
    """Read `configs/<name>.yaml` and check its shape. Runs write figures to `<artifacts_dir>/figures`; only `--publish`
    copies them to the profile's `publish_figures_dir` (the committed `figures/` for the demo)."""
    path = configs_dir / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in configs_dir.glob("*.yaml"))
        raise RunnerError(f"no profile {name!r}: {path} does not exist (known profiles: {', '.join(known)})")
    raw = load_yaml(path.read_text(), f"{path}:") or {}
    if not isinstance(raw, dict):
        raise RunnerError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    for key in ("artifacts_dir", "params"):
        if key not in raw:
            raise RunnerError(f"{path}: missing the key {key!r}")
    unknown = set(raw) - set(PROFILE_KEYS)
    if unknown:
        raise RunnerError(f"{path}: unknown keys {sorted(unknown)}; expected {', '.join(PROFILE_KEYS)}")
    notebooks = raw.get("notebooks") or {}
    if not isinstance(notebooks, dict) or not all(isinstance(v, dict | type(None)) for v in notebooks.values()):
        raise RunnerError(f"{path}: 'notebooks' must map a notebook number to a mapping of parameters")
    shared = raw.get("shared") or {}
    for section, values in [("params", raw["params"]), *((f"notebooks: {k!r}", v or {}) for k, v in notebooks.items())]:
        again = sorted(set(values) & set(shared))
        if again:
            raise RunnerError(f"{path}: {section} redefines the shared parameter(s) {again}: a shared key is set "
                              "once, under 'shared:', for every notebook that declares it")
    # $RLXF_ARTIFACTS_DIR (rlxf.paths.artifacts_dir) moves every profile's outputs to $RLXF_ARTIFACTS_DIR/<profile>.
    moved = os.environ.get("RLXF_ARTIFACTS_DIR")
    artifacts = (Path(moved) / name if moved else REPO_ROOT / raw["artifacts_dir"]).resolve()
    published = raw.get("publish_figures_dir")
    return Profile(
        name=name,
        figures_dir=artifacts / "figures",
        artifacts_dir=artifacts,
        publish_figures_dir=(REPO_ROOT / published).resolve() if published else None,
        params=dict(raw["params"]),
        notebooks={str(k).zfill(2): dict(v or {}) for k, v in notebooks.items()},
        shared=dict(shared),
    )


def plan(
    profile: Profile,
    notebooks: dict[str, Path],
    only: list[str] | None,
    overrides: list[str],
) -> list[tuple[str, Path, dict[str, Any]]]:
    """Select the notebooks and resolve each one's parameters; any undeclared parameter is an error."""
    import papermill

    selected = list(notebooks)
    if only:
        wanted = [o.zfill(2) for o in only]
        missing = [o for o in wanted if o not in notebooks]
        if missing:
            raise RunnerError(f"--only names notebooks that do not exist: {missing}; there are {list(notebooks)}")
        selected = [k for k in notebooks if k in wanted]
    everywhere, per_notebook = parse_overrides(overrides)
    # Overriding where outputs go moves the runner's own outputs (executed notebooks, summary) there too.
    for key in ("artifacts_dir", "figures_dir"):
        if key in everywhere:
            try:
                setattr(profile, key, output_path(everywhere.pop(key), f"-p {key}"))
            except ValueError as err:
                raise RunnerError(str(err)) from None
            if key == "artifacts_dir" and not any(item.startswith("figures_dir=") for item in overrides):
                profile.figures_dir = profile.artifacts_dir / "figures"
    for number in per_notebook:
        if number not in selected:
            raise RunnerError(f"-p {number}:...: notebook {number} is not among those selected ({selected})")

    common = dict(profile.params)
    common["artifacts_dir"] = str(profile.artifacts_dir)
    common["figures_dir"] = str(profile.figures_dir)
    inspected = {key: papermill.inspect_notebook(str(path)) for key, path in notebooks.items()}
    declared_by = {key: set(info) for key, info in inspected.items()}
    orphans = sorted(set(profile.shared) - set().union(*declared_by.values()))
    if orphans:
        raise RunnerError(f"configs/{profile.name}.yaml: shared parameter(s) {orphans} are declared by no notebook")
    steps = []
    declared_anywhere: set[str] = set()
    for key in selected:
        path = notebooks[key]
        declared = declared_by[key]
        if not declared:
            raise RunnerError(f"{path.name}: no cell tagged 'parameters' (every notebook needs exactly one)")
        declared_anywhere |= declared
        missing_common = [p for p in COMMON_PARAMS if p not in declared]
        if missing_common:
            raise RunnerError(f"{path.name}: its parameters cell does not declare {missing_common}")
        config = f"configs/{profile.name}.yaml"
        params = {k: v for k, v in common.items() if k in declared}
        params.update({k: v for k, v in profile.shared.items() if k in declared})
        sources = dict.fromkeys(params, config)
        undeclared_common = sorted(set(common) - declared)
        if undeclared_common:
            raise RunnerError(f"profile {profile.name}: params {undeclared_common} are not declared by {path.name}")
        for source, extra in ((config, profile.notebooks.get(key, {})), ("-p", per_notebook.get(key, {}))):
            unknown = sorted(set(extra) - declared)
            if unknown:
                raise RunnerError(
                    f"{source}: {path.name} does not declare the parameter(s) {unknown}; it declares {sorted(declared)}"
                )
            if source == config:
                profile_values = {**params, **extra}
            params.update(extra)
            sources.update(dict.fromkeys(extra, source))
        params.update({k: v for k, v in everywhere.items() if k in declared})
        sources.update({k: "-p" for k in everywhere if k in declared})
        check_types(path, inspected[key], params, sources, profile_values)
        steps.append((key, path, params))
    unknown_everywhere = sorted(set(everywhere) - declared_anywhere)
    if unknown_everywhere:
        raise RunnerError(f"-p: no selected notebook declares the parameter(s) {unknown_everywhere}")
    return steps


def _is_size(value: Any) -> bool:
    """A number or a list: what a smaller run shrinks (sizes, steps, rates); strings and booleans are choices."""
    return isinstance(value, int | float | list | tuple) and not isinstance(value, bool)


def dry_run(profile: Profile, notebooks: dict[str, Path], only: list[str] | None, overrides: list[str],
            configs_dir: Path = CONFIGS_DIR) -> list[tuple[str, Path, dict[str, Any]]]:
    """`profile`'s plan at smoke size: every number or list it sets, and data_dir, dtype and report_to, take the smoke
    profile's value; model parameters become the tiny models; outputs go to `artifacts/<profile>-dry-run/`.
    `-p` overrides win over all of that."""
    profile.artifacts_dir = REPO_ROOT / "artifacts" / f"{profile.name}-dry-run"
    profile.figures_dir = profile.artifacts_dir / "figures"
    steps = plan(profile, notebooks, only, overrides)
    smoke = {key: params for key, _, params in plan(load_profile("smoke", configs_dir), notebooks, only, [])}
    everywhere, per_notebook = parse_overrides(overrides)
    for key, _path, params in steps:
        fixed = set(everywhere) | set(per_notebook.get(key, {})) | {"artifacts_dir", "figures_dir", "profile"}
        for name, value in smoke[key].items():
            if name not in fixed and name in params and (name in DRY_RUN_FROM_SMOKE or _is_size(params[name])):
                params[name] = value
        params.update({name: tiny for name, tiny in DRY_RUN_MODELS.items() if name in params and name not in fixed})
    profile.name = f"{profile.name}-dry-run"
    return steps


def injected(profile: Profile, key: str, params: dict[str, Any]) -> dict[str, Any]:
    """What papermill injects into notebook `key`: the common parameters (the profile's name, seed, data and output
    directories) and every value that is not the profile's own (`-p` overrides, a dry run's sizes); the notebook reads
    the rest from `configs/<profile>.yaml` itself (rlxf.run.notebook.profile_params)."""
    own = {**profile.shared, **profile.notebooks.get(key, {})}
    missing = object()
    return {name: value for name, value in params.items()
            if name in COMMON_PARAMS or own.get(name, missing) != value}


def _figures_since(figures_dir: Path, key: str, since: float) -> list[str]:
    return sorted(p.name for p in figures_dir.glob(f"{key}_*.png") if p.stat().st_mtime >= since)


def _kernel_python(name: str) -> str | None:
    """The interpreter of the Jupyter kernel `name` (its argv[0]), None when Jupyter knows no such kernel."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        return KernelSpecManager().get_kernel_spec(name).argv[0]
    except NoSuchKernel:
        return None


def pick_kernel() -> str:
    """The `rlxf` kernel when Jupyter knows it for this environment (`make lab` registers it), else `python3`."""
    python = _kernel_python(KERNEL)
    if python is not None and Path(python).parent == Path(sys.executable).parent:
        return KERNEL
    why = ("no Jupyter kernel named 'rlxf' (make lab registers it for this venv)" if python is None
           else f"the Jupyter kernel 'rlxf' runs {python}, not this environment's {sys.executable}")
    print(f"[rlxf.run] {why}: using python3", flush=True)
    return "python3"


def execute(
    profile: Profile, steps: list[tuple[str, Path, dict[str, Any]]], *, log_output: bool = False,
    progress: bool = True,
) -> list[NotebookRun]:
    """Run the planned notebooks in order; stop at the first failure with the notebook and cell named.

    A notebook executes into `NN_name.running.ipynb`, which becomes `NN_name.ipynb` only when it succeeds (a failed
    re-run leaves `NN_name.failed.ipynb` and keeps the last good executed copy); run_summary.json keeps the last good
    entry of every notebook that is not re-run now.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    out_dir = profile.artifacts_dir / "notebooks"
    if out_dir.resolve() == NOTEBOOKS_DIR.resolve():
        raise RunnerError(f"artifacts_dir {profile.artifacts_dir}: executed notebooks would overwrite the sources")
    out_dir.mkdir(parents=True, exist_ok=True)
    profile.figures_dir.mkdir(parents=True, exist_ok=True)
    kernel = pick_kernel()
    runs: list[NotebookRun] = []
    for key, path, params in steps:
        for stale in (profile.artifacts_dir / "ready").glob(f"{key}.*"):  # stages reached by an earlier run
            stale.unlink()
        output, running = out_dir / path.name, out_dir / f"{path.stem}.running.ipynb"
        print(f"[rlxf.run] {path.name}  ({profile.name}; {len(params)} parameters)", flush=True)
        started = time.time()
        try:
            papermill.execute_notebook(
                str(path), str(running), parameters=injected(profile, key, params), cwd=str(path.parent),
                kernel_name=kernel, log_output=log_output,
                progress_bar={"desc": f"{key} cells", "dynamic_ncols": True} if progress else False,
            )
        except PapermillExecutionError as err:
            seconds = time.time() - started
            failed = running.replace(out_dir / f"{path.stem}.failed.ipynb")
            runs.append(NotebookRun(key, path.name, seconds, [], str(failed), status="failed"))
            _write_summary(profile, runs)
            raise RunnerError(
                f"{path.name} failed at cell {err.cell_index} (execution count {err.exec_count}) "
                f"after {seconds:.0f} s: "
                f"{err.ename}: {err.evalue}\nexecuted copy with the traceback: {failed}"
            ) from None
        running.replace(output)
        (out_dir / f"{path.stem}.failed.ipynb").unlink(missing_ok=True)
        seconds = time.time() - started
        figures = _figures_since(profile.figures_dir, key, started)
        runs.append(NotebookRun(key, path.name, seconds, figures, str(output), precision=_precision(params),
                                threads=_threads()))
        _write_summary(profile, runs)
    return runs


def _threads() -> int:
    """The kernel's threads: torch's pool follows OMP_NUM_THREADS, which the kernel inherits from this process."""
    import torch

    return torch.get_num_threads()


def _spawn(command: list[str], env: dict[str, str]):
    """One child runner process (a seam for the tests)."""
    import subprocess

    return subprocess.Popen(command, env=env, cwd=str(REPO_ROOT))


def execute_parallel(profile: Profile, steps: list[tuple[str, Path, dict[str, Any]]], jobs: int,
                     child_args: list[str]) -> list[NotebookRun]:
    """Run the planned notebooks, up to `jobs` at once, each as `python -m rlxf.run --only NN <child_args>` as soon
    as the planned notebooks it depends on (DEPENDS) have finished or reached the stage named, the longest chain first
    (LAUNCH_ORDER); stop launching at the first failure (the ones running finish) and name it. The cores are split
    between the notebooks running at once."""
    from rlxf.infra.threads import THREADS_FILE

    keys = [key for key, _, _ in steps]
    waiting, running, done, failed = list(keys), {}, [], []
    cores = os.cpu_count() or 1
    budgets_dir = profile.artifacts_dir / "threads"
    budgets_dir.mkdir(parents=True, exist_ok=True)
    threads, timeline = {}, []  # each running notebook's current share; every change, for run_summary.json
    started = time.time()

    def met(dependency: str) -> bool:
        key = notebook_of(dependency)
        if key in done or key not in keys:
            return True
        stage = dependency.partition(":")[2]
        return bool(stage) and key in running and ready_marker(profile.artifacts_dir, key, stage).is_file()

    with _children_stopped_on_signal(running):
        while waiting or running:
            ready = sorted((k for k in waiting if all(met(d) for d in DEPENDS.get(k, ()))
                            and all(a in done or a not in keys for a in START_AFTER.get(k, ()))), key=_launch_rank)
            launch = []
            while ready and len(running) + len(launch) < jobs and not failed:
                launch.append(ready.pop(0))
                waiting.remove(launch[-1])
            # The cores are split between everything running now; a notebook still running takes its new share at its
            # next long loop (rlxf.infra.threads.follow_thread_budget reads the file named by RLXF_THREADS_FILE).
            for key, share in split_cores(cores, [*running, *launch]).items():
                if threads.get(key) == share:
                    continue
                at = round(time.time() - started, 1)
                (budgets_dir / key).write_text(f"{share}\n")
                threads[key] = share
                timeline.append({"key": key, "threads": share, "at_s": at})
                if key in launch:
                    for stale in (profile.artifacts_dir / "ready").glob(f"{key}.*"):  # an earlier run's stages
                        stale.unlink()
                    env = {**os.environ, "OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share),
                           THREADS_FILE: str((budgets_dir / key).resolve())}
                    command = [sys.executable, "-m", "rlxf.run", "--profile", profile.name, "--only", key, *child_args]
                    print(f"[rlxf.run] start {key} with {share} thread(s) at {at:.0f} s", flush=True)
                    running[key] = _spawn(command, env)
                else:
                    print(f"[rlxf.run] {key} now gets {share} thread(s) at {at:.0f} s", flush=True)
            if failed and not running:
                break
            if not running:
                raise RunnerError(f"notebooks {waiting} wait for notebooks that are not planned or failed")
            time.sleep(1.0)
            for key, process in list(running.items()):
                if process.poll() is None:
                    continue
                del running[key]
                threads.pop(key, None)
                (done if process.returncode == 0 else failed).append(key)
                print(f"[rlxf.run] {key} {'done' if process.returncode == 0 else 'FAILED'} at "
                      f"{time.time() - started:.0f} s", flush=True)
    wall = time.time() - started
    summary = read_summary(profile.artifacts_dir)
    by_key = {entry["key"]: entry for entry in summary["notebooks"]}
    runs = [NotebookRun(**{f: by_key[k][f] for f in NotebookRun.__dataclass_fields__ if f in by_key[k]})
            for k in keys if k in by_key and k in done]
    if failed:
        raise RunnerError(f"notebook(s) {', '.join(failed)} failed (see above); not started: "
                          f"{', '.join(waiting) or 'none'}")
    _write_summary(profile, [], wall={"wall_seconds": wall, "jobs": jobs, "threads_timeline": timeline})
    return runs


@contextmanager
def _children_stopped_on_signal(running: dict):
    """SIGTERM or SIGINT to this runner (a scheduler, `timeout`, Ctrl-C) stops every child runner too (each shuts
    down its kernel on SIGTERM: nbclient's handler), then the run ends with a RunnerError; no orphans are left."""
    import signal

    def stop(signum, frame):
        names = ", ".join(running) or "none"
        raise RunnerError(f"stopped by {signal.Signals(signum).name}; the notebooks running ({names}) were stopped too")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for process in running.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.time() + 30.0
        for process in running.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.time()))
            except Exception:  # noqa: BLE001 (TimeoutExpired: it did not stop in 30 s)
                process.kill()


def _launch_rank(key: str) -> tuple[int, str]:
    return (LAUNCH_ORDER.index(key) if key in LAUNCH_ORDER else len(LAUNCH_ORDER), key)


def split_cores(cores: int, keys: list[str]) -> dict[str, int]:
    """The cores split between the notebooks `keys` running at once: an equal share each (at least 1), the remainder
    to the first ones."""
    if not keys:
        return {}
    share, extra = divmod(cores, len(keys))
    return {key: max(1, share + (i < extra)) for i, key in enumerate(keys)}


@contextmanager
def _cpu_only(active: bool):
    """Hide the GPUs from the kernels started inside (a dry run checks the CPU path), restored afterwards."""
    if not active:
        yield
        return
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlxf.run", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", required=True, choices=PROFILES, help="parameter set: configs/<profile>.yaml")
    parser.add_argument("--only", nargs="+", metavar="NN", help="run only these notebooks (by number)")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="[NN:]key=value",
                        help="override a parameter (YAML value); NN: limits it to one notebook")
    parser.add_argument("--list", action="store_true", help="list the notebooks and their parameters, run nothing")
    parser.add_argument("--log-output", action="store_true", help="stream the notebooks' output to this terminal")
    parser.add_argument("--quiet", action="store_true", help="no progress bar (cell i/N, time) while a notebook runs")
    parser.add_argument("--dry-run", action="store_true",
                        help="on CPU at smoke size with tiny models, into artifacts/<profile>-dry-run")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run up to N notebooks at once, in dependency order, the cores split between them")
    parser.add_argument("--publish", action="store_true",
                        help="after the run, copy run_summary.json, headline.json, the notebooks' summaries and the "
                             "executed notebooks to results/<profile>/, and the figures to the profile's "
                             "publish_figures_dir (demo: figures/)")
    args = parser.parse_args(argv)
    try:
        profile = load_profile(args.profile)
        notebooks = discover_notebooks()
        if not notebooks:
            raise RunnerError(f"no numbered notebooks in {NOTEBOOKS_DIR}")
        steps = (dry_run if args.dry_run else plan)(profile, notebooks, args.only, args.param)
        if args.list:
            for _key, path, params in steps:
                print(f"{path.name}: {params}")
            return 0
        if args.publish and args.dry_run:
            raise RunnerError("--publish records a real run; a --dry-run has nothing to publish")
        if args.jobs < 1:
            raise RunnerError(f"--jobs must be >= 1, got {args.jobs}")
        if args.jobs > 1 and len(steps) > 1:
            child_args = [*(f"--param={item}" for item in args.param), "--quiet",
                          *(["--dry-run"] if args.dry_run else []), *(["--log-output"] if args.log_output else [])]
            runs = execute_parallel(profile, steps, args.jobs, child_args)
        else:
            with _cpu_only(args.dry_run):
                runs = execute(profile, steps, log_output=args.log_output, progress=not args.quiet)
        published = publish(profile) if args.publish else None
    except RunnerError as err:
        print(f"[rlxf.run] error: {err}", file=sys.stderr)
        return 1
    print("\n" + summary_table(runs))
    print(f"\nexecuted notebooks: {profile.artifacts_dir / 'notebooks'}; figures: {profile.figures_dir}")
    if published:
        print(f"run summary, headline numbers and executed notebooks copied to {published}"
              + (f"; figures to {profile.publish_figures_dir}" if profile.publish_figures_dir else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
