"""The setup every notebook starts with: its parameters from the profile, the seed, the artifacts folder, which corpora
it reads, the hydrated tables."""

from __future__ import annotations

import json
import math
import re
import textwrap
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlxf.data import hydrate as hydrate_tables
from rlxf.data.source import locate_data
from rlxf.lm.precision import Precision, precision
from rlxf.paths import output_path


def profile_params(profile: str, notebook: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The values of `configs/<profile>.yaml` for notebook `notebook`'s parameters that `given` (the notebook's
    `globals()`) leaves None; prints them, and the parameters set otherwise (by papermill or by hand), which win.

    The profile is the one place a value is set: a notebook's parameters cell names the profile and leaves every other
    parameter None, so a notebook opened by hand runs the demo values and `python -m rlxf.run` injects overrides only.
    `artifacts_dir` is the profile's (artifacts/<profile>/), `figures_dir` is `<artifacts_dir>/figures`: only
    `python -m rlxf.run --publish` copies figures to the committed `figures/`.
    """
    from rlxf.run.runner import load_profile

    number = str(notebook).zfill(2)
    loaded = load_profile(profile)
    section = loaded.notebooks.get(number, {})
    undeclared = sorted(set(section) - set(given))
    if undeclared:
        raise KeyError(f"configs/{profile}.yaml sets {undeclared} for notebook {number}, whose parameters cell does "
                       "not declare them")
    artifacts = given.get("artifacts_dir")
    artifacts = loaded.artifacts_dir if artifacts is None else Path(artifacts)
    values = {**{k: v for k, v in loaded.params.items() if k != "profile"},
              "artifacts_dir": str(artifacts), "figures_dir": str(artifacts / "figures"),
              **{key: value for key, value in loaded.shared.items() if key in given}, **section}
    filled = {key: value for key, value in values.items() if given.get(key) is None}
    kept = {key: given[key] for key in values if key not in filled}
    said = [f"configs/{profile}.yaml, notebook {number}: " + ", ".join(f"{k}={v!r}" for k, v in filled.items())]
    if kept:
        said.append("set by papermill or by hand (these win): " + ", ".join(f"{k}={v!r}" for k, v in kept.items()))
    print("\n".join(textwrap.fill(line, 120, subsequent_indent="  ") for line in said))
    return filled


@dataclass(frozen=True)
class NotebookSetup:
    """Where a notebook reads and writes, resolved from its parameters."""

    artifacts: Path
    """The profile's git-ignored outputs (the `artifacts_dir` parameter)."""
    data_path: Path
    """The raw data folder read: the real corpora or the fixture corpora."""
    data_source: str
    """"shared", "fixtures" or the data folder's path, as in the manifest's `data_source`."""
    tables: Path
    """The hydrated tables, `<artifacts>/data` (read them with `rlxf.data.read_table`)."""
    precision: Precision
    """The compute precision chosen for this machine from the `dtype` parameter (`rlxf.lm.precision.precision`)."""


def setup(*, seed: int, data_dir: str | Path | None, artifacts_dir: str | Path, hydrate: bool = True,
          dtype: str = "auto") -> NotebookSetup:
    """Seed torch, print which corpora are used and the compute precision chosen from `dtype` (and why), and hydrate
    the tables (a no-op when notebook 01 already did).

    `data_dir` is the notebooks' parameter: "" for the real data else the fixtures, "fixtures", or a folder
    (see `rlxf.data.source.locate_data`). `hydrate=False` leaves the tables to the caller (notebook 01).
    """
    chosen = precision(dtype)
    print(chosen)
    torch.manual_seed(seed)
    artifacts = output_path(artifacts_dir, "artifacts_dir")
    data_path, data_source = locate_data(data_dir, artifacts)
    tables = artifacts / "data"
    if hydrate:
        hydrate_tables(data_path, tables, seed=seed)
    return NotebookSetup(artifacts=artifacts, data_path=data_path, data_source=data_source, tables=tables,
                         precision=chosen)


def _check_plain(value: Any, where: str) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str) or not key:
                raise TypeError(f"headline key {key!r} in {where} must be a non-empty string")
            _check_plain(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f"{where}[{index}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"headline value {where} is {value}: only finite numbers are recorded")
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        raise TypeError(f"headline value {where} is a {type(value).__name__}; convert it to a plain number or str")


def record_headline(artifacts: str | Path, notebook: str, values: dict[str, Any]) -> Path:
    """Write a notebook's headline numbers to `<artifacts>/headline/<notebook>.json` (replacing its earlier ones).

    `values` is a nested dict of plain numbers, strings, bools and lists (e.g. {"sentiment": {"ppo": {"gain": 1.2}}});
    the runner merges every notebook's file into `<artifacts>/headline.json`, which `--publish` copies to
    `results/<profile>/`.
    """
    if not isinstance(values, dict) or not values:
        raise ValueError(f"record_headline({notebook!r}): values must be a non-empty dict")
    _check_plain(values, notebook)
    path = Path(artifacts) / "headline" / f"{notebook}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(values, indent=1) + "\n")
    tmp.replace(path)
    return path


_STAGE = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def mark_ready(artifacts: str | Path, notebook: str, stage: str) -> Path:
    """Say that notebook `notebook` has written the outputs of `stage` (e.g. "03", "rewards"): `rlxf.run --jobs` then
    starts the notebooks that depend on "03:rewards" (rlxf.run.runner.DEPENDS) while the rest of 03 runs."""
    from rlxf.run.runner import ready_marker

    if not _STAGE.match(stage):
        raise ValueError(f"mark_ready({notebook!r}, {stage!r}): a stage is lower-case letters, digits and '-'")
    path = ready_marker(artifacts, notebook, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{time.time():.1f}\n")
    return path
