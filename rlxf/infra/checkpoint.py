"""The run-state store of training loops (PPOTrainer, SelfPlayTrainer): checkpoint directories written atomically
and checked by sha256, trainer state as JSON, RNG states, the run's fingerprint, and metrics as JSON lines that a
resume truncates.

A run directory holds `checkpoint-<step>/` (each with `<state file>.json`, `rng_state.pt`, the trainer's files and,
written last, `checksums.json`) and JSON-lines files with one row per step; resuming from a checkpoint rewrites
those files to the rows it knows.

The policy for a used directory, the same for every trainer: a new run (no resume, or `resume="auto"` finding a
checkpoint of another run) moves the earlier run's whole directory aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>`
with a warning naming it; nothing is deleted unless asked (`keep_checkpoints` prunes this run's own old checkpoints;
unfinished temporary directories of dead processes are removed).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import random
import re
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from rlxf.infra.threads import follow_thread_budget
from rlxf.infra.tracking import MetricsLog, check_report_to
from rlxf.paths import output_path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
# What `atomic_dir` leaves behind when its process dies: `.<name>.tmp-<pid>` (unfinished) and `.<name>.old-<pid>`
# (the previous version of `<name>` while it is being replaced).
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old)-(?P<pid>\d+)$")
MANIFEST = "checksums.json"
# Settings that change what is written or shown, not what a run computes: they may differ between a run and its resume.
# log_with_tensorboard: report_to's predecessor, still in the settings of older checkpoints.
NOT_IDENTITY = frozenset({"output_dir", "progress_bar", "report_to", "log_with_tensorboard", "checkpoint_every",
                          "keep_checkpoints", "snapshot_every", "rounds"})


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt or truncated (the message names the file), or of another run."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file whose checksum or content is wrong; the message names the file."""


class RunMismatch(CheckpointError):
    """A checkpoint written by another run (other settings, seed, model, adapters or data).

    The message says what differs.
    """


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """The directory of the checkpoint written after `step`."""
    return Path(output_dir) / f"checkpoint-{step}"


def list_checkpoints(output_dir: str | Path | None) -> list[Path]:
    """The finished `checkpoint-<step>` directories under `output_dir`, highest step first."""
    if output_dir is None or not Path(output_dir).is_dir():
        return []
    found = [(int(match.group(1)), path) for path in Path(output_dir).iterdir()
             if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The finished checkpoint with the highest step under `output_dir` (not checked), or None."""
    found = list_checkpoints(output_dir)
    return found[0] if found else None


@contextmanager
def atomic_dir(final: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling directory that becomes `final` only if the block finishes."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # A rename is atomic; an existing `final` is moved aside first so that a reader never sees half of one.
    old = final.with_name(f".{final.name}.old-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one checkpoint at a time: a directory of its own pid found now is stale
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a live process of another user
    return True


def clean_orphans(directory: str | Path) -> list[Path]:
    """Remove what `atomic_dir` left in `directory` when its process died (only of processes no longer alive);
    an `.<name>.old-<pid>` whose `<name>` is missing is the only copy and is renamed back -> the paths removed."""
    directory, removed = Path(directory), []
    if not directory.is_dir():
        return removed
    for path in directory.iterdir():
        match = TEMP_PATTERN.match(path.name)
        if match is None or not path.is_dir() or _pid_alive(int(match["pid"])):
            continue
        final = directory / match["name"]
        if match["what"] == "old" and not final.exists():
            os.replace(path, final)  # killed between the two renames of atomic_dir: this is the finished one
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def aside_path(path: Path, label: str) -> Path:
    """A free sibling name `<path>.<label>-<YYYYmmdd-HHMMSS>[-n]` to move `path` to."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = path.with_name(f"{path.name}.{label}-{stamp}"), 1
    while target.exists():
        target, n = path.with_name(f"{path.name}.{label}-{stamp}-{n}"), n + 1
    return target


# --------------------------------------------------------------------------------------------- files and checksums


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(directory: Path) -> None:
    """`checksums.json`: the sha256 of every file under `directory` (written last: it vouches for the rest)."""
    files = {path.relative_to(directory).as_posix(): sha256_file(path)
             for path in sorted(directory.rglob("*")) if path.is_file() and path.name != MANIFEST}
    (directory / MANIFEST).write_text(json.dumps({"sha256": files}, indent=1))


def verify_checkpoint(directory: str | Path) -> bool:
    """Check every file against `checksums.json` -> False if the checkpoint has none (written by an older rlxf).

    Raises CorruptCheckpoint naming the first missing or changed file."""
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise CorruptCheckpoint(f"{manifest}: not a checksum manifest ({error})") from error
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            raise CorruptCheckpoint(f"{path}: missing (listed in {manifest})")
        if sha256_file(path) != expected:
            raise CorruptCheckpoint(f"{path}: its sha256 differs from {manifest} (the file is corrupt or truncated)")
    return True


def load_tensors(path: str | Path, map_location=None):
    """`torch.load` of a checkpoint file with weights_only=True (tensors and plain data only); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise CorruptCheckpoint(f"{path}: missing")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # truncated zip, unpickling error, EOF: all mean the file is unusable
        raise CorruptCheckpoint(f"{path}: cannot be read ({type(error).__name__}: {error})") from error


def read_json(path: str | Path) -> dict:
    """A JSON object from a checkpoint file; errors name the file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CorruptCheckpoint(f"{path}: not readable JSON ({type(error).__name__}: {error})") from error
    if not isinstance(data, dict):
        raise CorruptCheckpoint(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


# --------------------------------------------------------------------------------------------- RNG and identity


def capture_rng_state() -> dict:
    """The python, numpy and torch (CPU and CUDA) random states as plain data for `torch.save`."""
    version, internal, gauss_next = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, list(internal), gauss_next],
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    """Restore what `capture_rng_state` returned."""
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_rng(path: Path) -> None:
    """Restore the RNG states a checkpoint directory holds."""
    restore_rng_state(load_tensors(Path(path) / "rng_state.pt"))


def config_fingerprint(settings) -> dict:
    """A settings dataclass as the plain JSON data a checkpoint stores (compare it to tell whether a run matches)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def settings_identity(settings) -> dict:
    """The settings that decide what a run computes (all but NOT_IDENTITY: paths, progress bars, checkpoint cadence)."""
    return {key: value for key, value in config_fingerprint(settings).items() if key not in NOT_IDENTITY}


def short_hash(data) -> str:
    """A 16-hex-digit sha256 of JSON data (for fingerprints: prompt lists, model configs)."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def fingerprint_differences(saved: dict, current: dict) -> list[str]:
    """What differs between two fingerprints, as "key: saved (checkpoint) vs current (this run)" lines.

    Only keys both record are compared (a trainer that does not know the data, e.g. a bare `load_checkpoint`,
    compares the rest)."""
    def flat(data, prefix=""):
        if isinstance(data, dict):
            return {k: v for key, value in data.items() for k, v in flat(value, f"{prefix}{key}.").items()}
        return {prefix[:-1]: data}

    saved, current = flat(saved), flat(current)
    return [f"{key}: {saved[key]!r} (checkpoint) vs {current[key]!r} (this run)"
            for key in sorted(saved.keys() & current.keys()) if saved[key] != current[key]]


ARCHITECTURE_FIELDS = ("model_type", "vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                      "num_key_value_heads", "intermediate_size", "max_position_embeddings")


def model_identity(model) -> dict:
    """The base model of a (Peft)model for a run fingerprint: its name (the last part of name_or_path, so that a
    moved cache still matches) and a hash of its architecture fields."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    name = str(getattr(base.config, "_name_or_path", "") or "").rstrip("/")
    return {"name": name.rsplit("/", 1)[-1], "architecture": short_hash(
        {field: getattr(config, field, None) for field in ARCHITECTURE_FIELDS})}


def weights_hash(named_tensors) -> str:
    """A 16-hex-digit sha256 of named tensors' bytes (for fingerprints: the adapter a run starts from)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------- JSON lines


def append_jsonl(path: str | Path, rows: Iterable[dict], *, fresh: bool = False, ensure_ascii: bool = True) -> int:
    """Append rows as JSON lines (`fresh`: start the file anew) -> the number of lines written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w" if fresh else "a", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
            count += 1
    return count


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace a file's text by a rename (a kill leaves the old or the new file, never half of one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def rewrite_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Replace a JSON-lines file by `rows` (on resume: the metrics the checkpoint knows)."""
    write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def truncate_jsonl(path: str | Path, n_lines: int, checkpoint: Path) -> None:
    """Keep the first `n_lines` lines of a JSON-lines file (on resume: drop what steps after `checkpoint` wrote)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if len(lines) < n_lines:
        raise ValueError(f"{path} has {len(lines)} lines but the checkpoint {checkpoint} counts {n_lines}: "
                         f"the file does not belong to this checkpoint")
    write_text_atomic(path, "".join(lines[:n_lines]))


# --------------------------------------------------------------------------------------------- the store


def check_resume(resume) -> None:
    """`resume` must be False, True, "auto" or a checkpoint path."""
    if not isinstance(resume, (bool, str, Path)):
        raise ValueError(f"train(resume=...): expected False, True, 'auto' or a checkpoint path, got {resume!r}")


class RunStore:
    """One training run's directory: `checkpoint-<step>/` (extras, `<state_file>`, RNG states, checksums) written
    atomically, the run's fingerprint, a metrics file.

    `kind` ("PPO", "self-play") and `unit` ("step", "round") name the run in errors; `owner` names the settings
    class. `metrics_file`: one JSON line per step (`log`), cut back on resume (`rewrite_metrics`); `report_to`:
    the tracker that gets every row too (rlxf.tracking; "none": none; the setting `<owner>.report_to`).
    `keep_checkpoints`: the newest this many checkpoints are kept (0 or None: all). `run_files`: other names whose
    presence marks the directory as used by a run. `fingerprint`: what identifies the run (settings, model,
    adapters, data); a checkpoint stores it and a resume compares it. `output_dir=None`: nothing is written.

    A used directory (one holding a metrics file, checkpoints or `run_files`) is never written into by a new run:
    `start_fresh` moves it aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>` and warns.
    """

    def __init__(self, output_dir: str | Path | None, *, state_file: str, kind: str, unit: str, owner: str,
                 metrics_file: str | None = None, report_to: str = "none",
                 keep_checkpoints: int | None = None, run_files: Iterable[str] = ()):
        self.output_dir = output_path(output_dir, f"{owner}.output_dir") if output_dir is not None else None
        self.state_file, self.kind, self.unit, self.owner = state_file, kind, unit, owner
        self.metrics_file, self.keep_checkpoints, self.run_files = metrics_file, keep_checkpoints, tuple(run_files)
        self.fingerprint: dict = {}
        self.last_checkpoint: Path | None = None
        self._verified: dict[Path, dict] = {}
        check_report_to(report_to, f"{owner}.report_to")  # before any work: a missing package is said at once
        self._tracker = (MetricsLog(report_to, self.output_dir, f"{owner}.report_to")
                         if report_to != "none" and self.output_dir is not None else None)

    # --- starting a run -----------------------------------------------------------------------------------------

    def begin(self, resume: bool | str | Path, done: int, load) -> bool:
        """Start or continue a run -> whether a checkpoint was loaded (through `load(path)`).

        `resume`: False starts a new run (an earlier run in output_dir is moved aside); True continues from the
        latest valid checkpoint (a corrupt one is skipped with a warning naming the file; one of another run is an
        error saying what differs); a path continues from that checkpoint (corrupt or of another run: an error);
        "auto" continues from the latest valid checkpoint if it has this run's fingerprint, else starts a new run
        (the earlier one moved aside, with a warning saying what differs). `done`: steps this trainer already
        took in this process; then only True or a path load anything (False and "auto" keep going).
        """
        check_resume(resume)
        if self.output_dir is not None:
            clean_orphans(self.output_dir)
        if resume is True or (isinstance(resume, (str, Path)) and resume != "auto"):
            load(None if resume is True else Path(resume))
            return True
        if done > 0:
            return False
        if resume == "auto":
            found = self.latest_valid()
            if found is not None:
                path, state = found
                differences = self.differences(state)
                if not differences:
                    load(path)
                    return True
                warnings.warn(f"{path} belongs to another {self.kind} run ({'; '.join(differences)}); starting "
                              "a new run", stacklevel=3)
        self.start_fresh()
        return False

    def holds_a_run(self) -> bool:
        """Whether output_dir holds files of an earlier run (metrics, checkpoints, unfinished ones, `run_files`)."""
        if self.output_dir is None or not self.output_dir.is_dir():
            return False
        names = [self.metrics_file, *self.run_files]
        return any((self.output_dir / name).exists() for name in names if name) or any(
            CHECKPOINT_PATTERN.match(path.name) or TEMP_PATTERN.match(path.name) for path in self.output_dir.iterdir())

    def start_fresh(self) -> Path | None:
        """A new run: an earlier run's directory is moved aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>` (a warning
        names it) -> where it went (None: nothing to move)."""
        if not self.holds_a_run():
            return None
        target = aside_path(self.output_dir, "old")
        os.replace(self.output_dir, target)
        self._verified.clear()
        warnings.warn(f"{self.output_dir} held an earlier {self.kind} run; moved it to {target} and started a new "
                      "run there (pass resume=True or resume='auto' to continue a run instead)", stacklevel=4)
        return target

    # --- checkpoints ----------------------------------------------------------------------------------------------

    def save(self, step: int, state: dict, write_extras=None) -> Path:
        """Write `checkpoint-<step>`: `write_extras(tmp_dir)` first, then the state (with the fingerprint), the RNG
        states and, last, the checksums; then drop checkpoints beyond `keep_checkpoints`."""
        if self.output_dir is None:
            raise ValueError(f"save_checkpoint(): {self.owner}.output_dir is None")
        path = checkpoint_dir(self.output_dir, step)
        with atomic_dir(path) as tmp:
            if write_extras is not None:
                write_extras(tmp)
            (tmp / self.state_file).write_text(json.dumps({**state, "fingerprint": self.fingerprint}, indent=1))
            torch.save(capture_rng_state(), tmp / "rng_state.pt")
            write_manifest(tmp)
        self._verified.pop(path, None)
        self.last_checkpoint = path
        self.prune()
        return path

    def prune(self) -> list[Path]:
        """Remove this run's checkpoints beyond the newest `keep_checkpoints` (never the last written or loaded)."""
        if not self.keep_checkpoints or self.output_dir is None:
            return []
        removed = [path for path in list_checkpoints(self.output_dir)[self.keep_checkpoints:]
                   if path != self.last_checkpoint]
        for path in removed:
            shutil.rmtree(path)
            self._verified.pop(path, None)
        return removed

    def read(self, path: str | Path) -> dict:
        """The state of the checkpoint `path`, after checking its checksums; errors name the file."""
        path = Path(path)
        if path in self._verified:
            return self._verified[path]
        if not (path / self.state_file).is_file():  # corrupt: resume falls back to the previous checkpoint
            raise CorruptCheckpoint(f"{path / self.state_file}: missing, so {path.name} is not a complete {self.kind} "
                                    "checkpoint")
        if not verify_checkpoint(path):
            state = read_json(path / self.state_file)
            if "fingerprint" in state:  # this rlxf writes checksums.json last: without it nothing vouches for the files
                raise CorruptCheckpoint(f"{path / MANIFEST}: missing beside a checkpoint that records a fingerprint "
                                        "(written by this rlxf, which writes it last): its files cannot be trusted")
            warnings.warn(f"{path} has no {MANIFEST} (written by an older rlxf): its files are not checked",
                          stacklevel=3)
        state = read_json(path / self.state_file)
        self._verified[path] = state
        return state

    def latest_valid(self) -> tuple[Path, dict] | None:
        """The newest checkpoint that passes its checks, and its state; corrupt newer ones are moved aside to
        `checkpoint-<step>.corrupt-<time>` with a warning naming the bad file."""
        for path in list_checkpoints(self.output_dir):
            try:
                return path, self.read(path)
            except CorruptCheckpoint as error:
                target = aside_path(path, "corrupt")
                os.replace(path, target)
                warnings.warn(f"skipping a corrupt checkpoint: {error}; moved it to {target.name} and falling back "
                              "to the previous one", stacklevel=3)
        return None

    def differences(self, state: dict) -> list[str]:
        """How a checkpoint's fingerprint differs from this run's (empty: the same run)."""
        saved = state.get("fingerprint")
        if saved is None:  # written by an older rlxf: only the settings were stored
            saved = {"settings": {k: v for k, v in state.get("config", {}).items() if k not in NOT_IDENTITY}}
        return fingerprint_differences(saved, self.fingerprint)

    def load(self, path: str | Path | None = None) -> tuple[Path, dict]:
        """The checkpoint `path` (default: the latest valid one in output_dir) and its state, checked: its checksums
        (errors name the file) and its fingerprint (RunMismatch says what differs)."""
        if path is not None:
            path = Path(path)
            state = self.read(path)
        else:
            if self.output_dir is None:
                raise ValueError(f"load_checkpoint(): no path given and {self.owner}.output_dir is None")
            found = self.latest_valid()
            if found is None:
                raise FileNotFoundError(f"no checkpoint-<{self.unit}> directory to resume from in {self.output_dir}")
            path, state = found
        differences = self.differences(state)
        if differences:
            raise RunMismatch(f"{path} belongs to another {self.kind} run: {'; '.join(differences)}. Resume with "
                              "the same settings, model, adapters and data, or start a new run (resume=False or "
                              "'auto' moves the old run aside)")
        return path, state

    def loaded(self, path: Path, history: list[dict]) -> None:
        """After a checkpoint was restored: remember it and cut the metrics file back to its `history`."""
        self.last_checkpoint = path
        self.rewrite_metrics(history)

    # --- metrics and the loop -------------------------------------------------------------------------------------

    def log(self, metrics: dict, step: int, *, fresh: bool = False) -> None:
        """Append one metrics row to the metrics file (`fresh`: a new run starts it anew) and the tracker."""
        if self.output_dir is None or self.metrics_file is None:
            return
        append_jsonl(self.output_dir / self.metrics_file, [metrics], fresh=fresh)
        if self._tracker is not None:
            self._tracker.write(metrics, step)

    def rewrite_metrics(self, history: list[dict]) -> None:
        """On resume: the metrics file holds exactly the rows the checkpoint knows (later steps' lines dropped)."""
        if self.output_dir is not None and self.metrics_file is not None:
            rewrite_jsonl(self.output_dir / self.metrics_file, history)

    def saved_at(self, step: int) -> bool:
        """Whether the last checkpoint written or loaded is the one of `step`."""
        return self.last_checkpoint is not None and self.last_checkpoint.name == f"checkpoint-{step}"

    def note(self) -> str:
        """Where a stopped run can resume from, for error messages."""
        return (f"Last checkpoint kept: {self.last_checkpoint}" if self.last_checkpoint is not None
                else "No checkpoint was written yet.")

    def run(self, total: int, done, one_step, *, desc: str, progress_bar: bool, postfix, save, stop=None) -> None:
        """The loop of a run: `one_step() -> metrics` until `done() >= total` (or `stop()`), with a progress bar;
        at the end `save()` unless the last checkpoint is already the final one."""
        bar = tqdm(total=total, initial=done(), desc=desc, disable=not progress_bar)
        try:
            while done() < total and not (stop is not None and stop()):
                follow_thread_budget()  # every step on the cores the runner gives this notebook now (--jobs)
                metrics = one_step()
                bar.update(1)
                bar.set_postfix(postfix(metrics))
        finally:
            bar.close()
            if self._tracker is not None:
                self._tracker.close()
        if self.output_dir is not None and done() > 0 and not self.saved_at(done()):
            save()
