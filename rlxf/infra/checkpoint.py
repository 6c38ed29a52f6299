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

from rlxf.infra.identity import fingerprint_differences
from rlxf.infra.tracking import MetricsLog, check_report_to
from rlxf.paths import output_path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
# What `atomic_dir` leaves behind when its process dies: `.<name>.tmp-<pid>` (unfinished) and `.<name>.old-<pid>`
# (the previous version of `<name>` while it is being replaced).
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.(?P<what>tmp|old)-(?P<pid>\d+)$")
MANIFEST = "checksums.json"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt or truncated (the message names the file), or of another run."""


class CorruptCheckpoint(CheckpointError):
    """A checkpoint file whose checksum or content is wrong; the message names the file."""


class OutputDirInUse(RuntimeError):
    """Another live trainer holds the output_dir (its `<output_dir>.lock` names its process)."""


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


def hold_lock(directory: Path) -> Path:
    """Take `<directory>.lock` (beside the directory: a run moved aside leaves it in place) for this process -> its
    path. A lock of another live process is an error naming the directory and the holder; one of a process that is
    gone (or of this one: a notebook re-running a cell) is taken over."""
    lock = directory.with_name(f"{directory.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = lock.read_text().strip() if lock.exists() else ""
            holder = int(text) if text.isdigit() else 0
            if holder and _pid_alive(holder):
                raise OutputDirInUse(f"{directory} is held by another live trainer (pid {holder}, lock {lock}): wait "
                                     "for it to finish or give this run another output_dir (if that process is no "
                                     "trainer of this directory, delete the lock)") from None
            lock.unlink(missing_ok=True)  # stale: its process is gone
            continue
        with os.fdopen(handle, "w") as file:
            file.write(str(os.getpid()))
        return lock
    raise OutputDirInUse(f"{directory}: could not take its lock {lock} (other processes keep taking it)")


def release_lock(lock: Path) -> None:
    """Remove a lock that `hold_lock` took for this process (a lock another process took over stays)."""
    if lock.exists() and lock.read_text().strip() == str(os.getpid()):
        lock.unlink(missing_ok=True)


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


# --------------------------------------------------------------------------------------------- RNG


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


def read_jsonl(path: str | Path, check=None) -> list[dict]:
    """The rows of a JSON-lines file (blank lines skipped); a line that is not a JSON object is named by file:line.
    `check(row, "file:line")`, when given, validates each row (and raises naming that place)."""
    path, rows = Path(path), []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
        if check is not None:
            check(row, f"{path}:{line_number}")
        rows.append(row)
    return rows


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


def truncate_jsonl(path: str | Path, n_lines: int, checkpoint: Path, source: str | Path | None = None) -> None:
    """Keep the first `n_lines` lines of a JSON-lines file (on resume: drop what steps after `checkpoint` wrote);
    `source`: take them from that file (a checkpoint of another directory: its run's file)."""
    path, source = Path(path), Path(source if source is not None else path)
    lines = source.read_text(encoding="utf-8").splitlines(keepends=True) if source.exists() else []
    if len(lines) < n_lines:
        raise ValueError(f"{source} has {len(lines)} lines but the checkpoint {checkpoint} counts {n_lines}: "
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
    adapters, data); a checkpoint stores it and a resume compares it. `assumed`: top-level fingerprint parts that
    checkpoints of an older rlxf did not record, as they were then (e.g. the self-play rater: {"rater": {"kind":
    "generated"}}). `output_dir=None`: nothing is written.

    A used directory (one holding a metrics file, checkpoints or `run_files`) is never written into by a new run:
    `start_fresh` moves it aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>` and warns.
    """

    def __init__(self, output_dir: str | Path | None, *, state_file: str, kind: str, unit: str, owner: str,
                 metrics_file: str | None = None, report_to: str = "none",
                 keep_checkpoints: int | None = None, run_files: Iterable[str] = (), assumed: dict | None = None):
        self.output_dir = output_path(output_dir, f"{owner}.output_dir") if output_dir is not None else None
        self.state_file, self.kind, self.unit, self.owner = state_file, kind, unit, owner
        self.metrics_file, self.keep_checkpoints, self.run_files = metrics_file, keep_checkpoints, tuple(run_files)
        self.fingerprint: dict = {}
        self.assumed = dict(assumed or {})
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
        error saying what differs); a path continues from that checkpoint (corrupt or of another run: an error; one
        of another directory first moves the run in output_dir aside, as a new run does); "auto" continues from the
        latest valid checkpoint if it has this run's fingerprint, else starts a new run (the earlier one moved
        aside, with a warning saying what differs). `done`: steps this trainer already
        took in this process; then only True or a path load anything (False and "auto" keep going).
        """
        check_resume(resume)
        if self.output_dir is not None:
            clean_orphans(self.output_dir)
        if resume is True or (isinstance(resume, (str, Path)) and resume != "auto"):
            if resume is not True and self.output_dir is not None and not self.holds(Path(resume)):
                self.load(resume)  # checked first: a corrupt checkpoint or one of another run moves nothing
                self.start_fresh()  # a checkpoint of another directory: output_dir's own run is moved aside
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

    def holds(self, checkpoint: Path) -> bool:
        """Whether `checkpoint` is one of output_dir's own checkpoints."""
        return self.output_dir is not None and checkpoint.resolve().parent == self.output_dir.resolve()

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
        if saved is None:  # written by an older rlxf: only the settings were stored (only keys both know are compared)
            saved = {"settings": state.get("config", {})}
        return fingerprint_differences({**self.assumed, **saved}, self.fingerprint)

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

    @contextmanager
    def session(self) -> Iterator[None]:
        """One `train()` call of the trainer that owns this store: it holds `<output_dir>.lock` (one live trainer per
        output_dir, see `hold_lock`); at its end the tracker is closed and the lock released."""
        lock = hold_lock(self.output_dir) if self.output_dir is not None else None
        try:
            yield
        finally:
            if self._tracker is not None:
                self._tracker.close()
            if lock is not None:
                release_lock(lock)

    def loaded(self, path: Path, history: list[dict]) -> None:
        """After a checkpoint was restored: remember it and cut the metrics file back to its `history`."""
        self.last_checkpoint = path
        self.rewrite_metrics(history)

    # --- metrics --------------------------------------------------------------------------------------------------

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
