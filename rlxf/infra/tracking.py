"""Experiment tracking: the one `report_to` setting of every trainer, and rlxf's own runs' metrics to that tracker.

`report_to` is "none", "tensorboard", "trackio" or "wandb". TRL's and transformers' trainers take it as it is
(`TrainingArguments.report_to`); rlxf's PPO and self-play runs write their metrics rows through `MetricsLog`:
TensorBoard event files under `<output_dir>/tensorboard`, or one trackio / wandb run (project "rlxf") per `train()`.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

REPORT_TO = ("none", "tensorboard", "trackio", "wandb")
PROJECT = "rlxf"
_INSTALL = {"tensorboard": "pip install '.[tensorboard]' (or pip install tensorboard)",
            "trackio": "pip install trackio", "wandb": "pip install wandb"}


def check_report_to(value, parameter: str) -> str:
    """A known tracker whose package is importable; the error names `parameter` and the command that installs it."""
    if value not in REPORT_TO:
        raise ValueError(f"{parameter} must be one of {', '.join(REPORT_TO)}; got {value!r}")
    if value != "none" and importlib.util.find_spec(value) is None:
        raise ImportError(f"{parameter}={value!r} needs the {value} package, which is not installed: "
                          f"{_INSTALL[value]}")
    return value


class MetricsLog:
    """Scalars of metrics dicts to the tracker `report_to` names; opened on the first write, ended by `close()`.

    `directory`: where TensorBoard writes, and the run's name for trackio / wandb. `setting`: the parameter that
    asked for it (named in errors).
    """

    def __init__(self, report_to: str, directory: str | Path, setting: str):
        self.report_to, self.directory, self.setting = report_to, Path(directory), setting
        self._writer = self._module = None

    def _open(self) -> None:
        check_report_to(self.report_to, self.setting)
        if self.report_to == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.directory / "tensorboard"))
        else:  # trackio mirrors wandb's init / log / finish
            self._module = importlib.import_module(self.report_to)
            self._module.init(project=PROJECT, name=f"{self.directory.parent.name}/{self.directory.name}")

    def write(self, metrics: dict, step: int) -> None:
        if self.report_to == "none":
            return
        if self._writer is None and self._module is None:
            self._open()
        scalars = {key: value for key, value in metrics.items()
                   if key != "step" and isinstance(value, int | float) and not isinstance(value, bool)}
        if self._writer is not None:
            for key, value in scalars.items():
                self._writer.add_scalar(key, value, step)
            self._writer.flush()
        else:
            self._module.log(scalars, step=step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._module is not None:
            self._module.finish()
        self._writer = self._module = None
