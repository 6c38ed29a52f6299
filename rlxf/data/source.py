"""Which corpora a notebook uses, said loudly: the real data directory, or the fixture corpora rlxf writes itself."""

from __future__ import annotations

from pathlib import Path

from rlxf.data.fixtures import write_fixtures
from rlxf.data.hydrate import data_source, find_data_dir

FIXTURES = "fixtures"


def locate_data(data_dir: str | Path | None, artifacts_dir: str | Path) -> tuple[Path, str]:
    """Resolve the notebooks' `data_dir` parameter to (directory, source) and print a banner saying which.

    `"fixtures"` writes and uses the fixture corpora under `artifacts_dir`; `""` looks for real data
    ($RLXF_DATA_DIR, then ../shared/data) and falls back to the fixtures; anything else must be a directory.
    Figures made from fixtures must never be mistaken for results on the real corpora, hence the banner.
    """
    asked = str(data_dir or "") == FIXTURES
    path = write_fixtures(Path(artifacts_dir) / "fixture-data") if asked else find_data_dir(data_dir or None)
    source = data_source(path)
    line = "=" * 78
    if source == "fixtures":
        why = "asked for" if asked else "no real data directory found"
        print(f"{line}\nDATA: FIXTURE CORPORA ({why}): {path}\n"
              f"      a few dozen rows per source; numbers and figures are NOT results on the real data.\n{line}")
    else:
        print(f"{line}\nDATA: real corpora ({source}) from {path}\n{line}")
    return path, source
