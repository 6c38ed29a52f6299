"""The thread budget of a notebook that `python -m rlxf.run --jobs N` runs beside others.

The runner splits the cores between the notebooks running at once and writes each one's share to the file named by
$RLXF_THREADS_FILE; the loop harness (`rlxf.progress.steps` and `progress`, `thread_budget_callback` in Trainers)
takes the share at every step, so a notebook left alone gets the freed cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

THREADS_FILE = "RLXF_THREADS_FILE"  # env: a file holding this process's current thread budget (set by rlxf.run --jobs)


def follow_thread_budget() -> int:
    """Take the thread count that `python -m rlxf.run --jobs N` now gives this notebook -> torch's thread count.

    The runner splits the cores between the notebooks running at once and writes each one's share to the file named
    by $RLXF_THREADS_FILE; when a notebook finishes, the ones still running get its cores. Long loops (PPO steps,
    Trainer steps, batched generation and scoring) call this; it costs one small file read. Without the variable, or
    with an unreadable file, nothing changes. Call it from the main thread: torch's OpenMP thread count is per thread.
    """
    path = os.environ.get(THREADS_FILE)
    if path:
        try:
            wanted = int(Path(path).read_text().strip())
        except (OSError, ValueError):
            wanted = 0
        if wanted >= 1 and wanted != torch.get_num_threads():
            torch.set_num_threads(wanted)
    return torch.get_num_threads()


def thread_budget_callback():
    """A transformers `TrainerCallback` that calls `follow_thread_budget()` before every optimisation step."""
    from transformers import TrainerCallback

    class FollowThreadBudget(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            follow_thread_budget()

    return FollowThreadBudget()
