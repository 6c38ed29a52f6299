"""Progress bars of rlxf's long loops (batched generation, evaluation, judge calls, classifier prediction).

One policy for all of them: a tqdm.auto bar (a widget in Jupyter, text on stderr elsewhere) when the loop has more
than one item, transient (it clears when done), and off everywhere when `RLXF_PROGRESS=0`.
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
