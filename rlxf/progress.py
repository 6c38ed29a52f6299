"""Progress bars of rlxf's long loops (batched generation, evaluation, judge calls, classifier prediction) and the
loop harness of the training runs (`steps`: PPO steps, self-play rounds).

One policy for all of them: a tqdm.auto bar (a widget in Jupyter, text on stderr elsewhere), off everywhere when
`RLXF_PROGRESS=0`; `progress` bars show when the loop has more than one item and clear when done, `steps` bars stay.
Both take the runner's thread budget (`rlxf.infra.threads.follow_thread_budget`): `progress` when a loop starts,
`steps` before every step.
"""

from __future__ import annotations

import os

from tqdm.auto import tqdm

from rlxf.infra.threads import follow_thread_budget


def enabled() -> bool:
    """Whether bars are on: `RLXF_PROGRESS=0` (or "false", "off") turns every rlxf bar off."""
    return os.environ.get("RLXF_PROGRESS", "1").strip().lower() not in ("0", "false", "off", "no")


def progress(iterable=None, *, total: int | None = None, desc: str, unit: str = "it", show: bool | None = None):
    """A tqdm bar over `iterable` (or a manual one of `total` items): shown when `show`, or when `show` is None, the
    loop has more than one item and `enabled()`."""
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if show is None:
        show = enabled() and (total is None or total > 1)
    follow_thread_budget()  # a long loop starts: on the cores the runner gives this notebook now
    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=False, disable=not show, dynamic_ncols=True)


class Steps:
    """The steps `initial + 1 .. total` of a training run, one per iteration, with a bar (see `steps`)."""

    def __init__(self, total: int, *, initial: int = 0, desc: str, show: bool = True):
        self.total, self.initial = total, initial
        self.bar = tqdm(total=total, initial=min(initial, total), desc=desc, disable=not (show and enabled()),
                        dynamic_ncols=True)

    def __iter__(self):
        try:
            for step in range(self.initial + 1, self.total + 1):
                follow_thread_budget()  # every step on the cores the runner gives this notebook now (--jobs)
                yield step
                self.bar.update(1)
        finally:
            self.bar.close()

    def show(self, **values) -> None:
        """Values to show beside the bar (e.g. the step's reward)."""
        self.bar.set_postfix(values)


def steps(total: int, *, initial: int = 0, desc: str, show: bool = True) -> Steps:
    """The loop of a training run: iterate for the step numbers `initial + 1 .. total` (none when `initial` is
    already `total`), with a bar that `show=False` (a trainer's `progress_bar`) or `RLXF_PROGRESS=0` hides, and the
    runner's thread budget taken before every step."""
    return Steps(total, initial=initial, desc=desc, show=show)
