"""The run-state store of training loops (PPOTrainer, SelfPlayTrainer): checkpoint directories written atomically,
trainer state as JSON, RNG states, the settings' fingerprint, and metrics as JSON lines that a resume truncates.

A run directory holds `checkpoint-<step>/` (one per checkpoint, each with `<state file>.json` and `rng_state.pt`) and
JSON-lines files with one row per step; resuming from a checkpoint rewrites those files to the rows it knows.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
import shutil
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    """The directory of the checkpoint written after `step`."""
    return Path(output_dir) / f"checkpoint-{step}"


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The finished checkpoint with the highest step under `output_dir`, or None."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    found = [
        (int(match.group(1)), path)
        for path in output_dir.iterdir()
        if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))
    ]
    return max(found)[1] if found else None


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



def config_fingerprint(settings) -> dict:
    """A settings dataclass as the plain JSON data a checkpoint stores (compare it to tell whether a run matches)."""
    return json.loads(json.dumps(dataclasses.asdict(settings)))


def find_checkpoint(output_dir: str | Path | None, path: str | Path | None, what: str, unit: str) -> Path:
    """`path`, or the latest checkpoint in `output_dir` when None; an error names what is missing."""
    if path is not None:
        return Path(path)
    if output_dir is None:
        raise ValueError(f"load_checkpoint(): no path given and {what}.output_dir is None")
    found = latest_checkpoint(output_dir)
    if found is None:
        raise FileNotFoundError(f"no checkpoint-<{unit}> directory to resume from in {output_dir}")
    return found


def write_state(directory: Path, state_file: str, state: dict) -> None:
    """The trainer state as JSON and the RNG states, into a checkpoint directory being written."""
    (directory / state_file).write_text(json.dumps(state, indent=1))
    torch.save(capture_rng_state(), directory / "rng_state.pt")


def read_state(path: Path, state_file: str, kind: str) -> dict:
    """The trainer state a checkpoint holds; an error if `path` is not a checkpoint of this `kind`."""
    file = path / state_file
    if not file.is_file():
        raise FileNotFoundError(f"not a {kind} checkpoint (no {state_file}): {path}")
    return json.loads(file.read_text())


def restore_rng(path: Path) -> None:
    """Restore the RNG states a checkpoint directory holds."""
    restore_rng_state(torch.load(path / "rng_state.pt"))


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


def rewrite_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    """Replace a JSON-lines file by `rows` (on resume: the metrics the checkpoint knows)."""
    Path(path).write_text("".join(json.dumps(row) + "\n" for row in rows))


def truncate_jsonl(path: str | Path, n_lines: int, checkpoint: Path) -> None:
    """Keep the first `n_lines` lines of a JSON-lines file (on resume: drop what steps after `checkpoint` wrote)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    if len(lines) < n_lines:
        raise ValueError(f"{path} has {len(lines)} lines but the checkpoint {checkpoint} counts {n_lines}: "
                         f"the file does not belong to this checkpoint")
    path.write_text("".join(lines[:n_lines]), encoding="utf-8")


class TensorBoardLog:
    """Scalars of metrics dicts to TensorBoard (needs the tensorboard package); opened on the first write."""

    def __init__(self, directory: str | Path, setting: str):
        self.directory, self.setting, self._writer = Path(directory), setting, None

    def write(self, metrics: dict, step: int) -> None:
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as error:
                raise ImportError(f"{self.setting} needs the tensorboard package "
                                  "(pip install 'rlxf[tensorboard]')") from error
            self._writer = SummaryWriter(str(self.directory))
        for key, value in metrics.items():
            if key != "step":
                self._writer.add_scalar(key, value, step)
        self._writer.flush()


def set_seed(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class RunStore:
    """One training run's directory: `checkpoint-<step>/` (extras, `<state_file>`, RNG states) written atomically.

    `kind` ("PPO", "self-play") and `unit` ("step", "round") name the run in errors; `owner` names the settings
    class. `metrics_file`: one JSON line per step (`log`), cut back on resume (`rewrite_metrics`); `tensorboard`:
    the setting that asked for TensorBoard scalars too (None: none). `output_dir=None`: nothing is written.
    """

    def __init__(self, output_dir: str | Path | None, *, state_file: str, kind: str, unit: str, owner: str,
                 metrics_file: str | None = None, tensorboard: str | None = None):
        self.output_dir = Path(output_dir) if output_dir is not None else None
        self.state_file, self.kind, self.unit, self.owner = state_file, kind, unit, owner
        self.metrics_file = metrics_file
        self.last_checkpoint: Path | None = None
        self._tensorboard = (TensorBoardLog(self.output_dir / "tensorboard", tensorboard)
                             if tensorboard is not None and self.output_dir is not None else None)

    def log(self, metrics: dict, step: int, *, fresh: bool = False) -> None:
        """Append one metrics row to the metrics file (`fresh`: a new run starts it anew) and TensorBoard."""
        if self.output_dir is None or self.metrics_file is None:
            return
        append_jsonl(self.output_dir / self.metrics_file, [metrics], fresh=fresh)
        if self._tensorboard is not None:
            self._tensorboard.write(metrics, step)

    def rewrite_metrics(self, history: list[dict]) -> None:
        """On resume: the metrics file holds exactly the rows the checkpoint knows (later steps' lines dropped)."""
        if self.output_dir is not None and self.metrics_file is not None:
            rewrite_jsonl(self.output_dir / self.metrics_file, history)

    def resume(self, resume: bool | str | Path, done: int, settings, load) -> bool:
        """Continue a run through `load(path)`: True the latest checkpoint, a path that one, "auto" the latest only
        if it was written with the same `settings` and nothing is `done` yet -> whether a checkpoint was loaded."""
        if resume == "auto":
            resume = (done == 0 and self.matching(settings)) or False
        if resume:
            load(None if resume is True else resume)
        return bool(resume)

    def save(self, step: int, state: dict, write_extras=None) -> Path:
        """Write `checkpoint-<step>`: `write_extras(tmp_dir)` first, then the state and the RNG states."""
        if self.output_dir is None:
            raise ValueError(f"save_checkpoint(): {self.owner}.output_dir is None")
        path = checkpoint_dir(self.output_dir, step)
        with atomic_dir(path) as tmp:
            if write_extras is not None:
                write_extras(tmp)
            write_state(tmp, self.state_file, state)
        self.last_checkpoint = path
        return path

    def load(self, path: str | Path | None = None) -> tuple[Path, dict]:
        """The checkpoint `path` (default: the latest in output_dir) and the state it holds."""
        path = find_checkpoint(self.output_dir, path, self.owner, self.unit)
        return path, read_state(path, self.state_file, self.kind)

    def matching(self, settings) -> Path | None:
        """The latest checkpoint if it was written with the same settings (else None, with a warning)."""
        path = latest_checkpoint(self.output_dir) if self.output_dir is not None else None
        if path is None:
            return None
        if read_state(path, self.state_file, self.kind).get("config") != config_fingerprint(settings):
            warnings.warn(f"{path} was written with other {self.kind} settings; starting afresh", stacklevel=4)
            return None
        return path

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
                metrics = one_step()
                bar.update(1)
                bar.set_postfix(postfix(metrics))
        finally:
            bar.close()
        if self.output_dir is not None and done() > 0 and not self.saved_at(done()):
            save()
