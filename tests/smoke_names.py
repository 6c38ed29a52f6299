"""What a smoke run writes, by name: figures, metric keys of every JSON-lines log, keys of every JSON summary.

The committed `tests/smoke_names.json` is this collection after a full smoke run; a redesign that renames a metric,
a summary field or a figure by accident fails `test_smoke_run_writes_the_committed_names`. To accept a deliberate
rename: `python -m tests.smoke_names > tests/smoke_names.json` after `python -m rlxf.run --profile smoke`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Files whose names depend on the run's length or on time, not on the code's vocabulary.
_SKIP_PARTS = {"notebooks", "fixture-data"}


def _keys(value, prefix: str = "") -> set[str]:
    """Dotted key paths of nested dicts (lists are looked into, their indices are not part of the name)."""
    if isinstance(value, dict):
        out = set()
        for key, item in value.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            out.add(name)
            out |= _keys(item, name)
        return out
    if isinstance(value, list):
        return set().union(*(_keys(item, prefix) for item in value)) if value else set()
    return set()


def collect(artifacts_dir: str | Path, figures_dir: str | Path) -> dict:
    """{"figures": [...], "jsonl": {file: [keys]}, "json": {file: [keys]}} of one profile's outputs."""
    artifacts = Path(artifacts_dir)
    jsonl, summaries = {}, {}
    for path in sorted(artifacts.rglob("*.json*")):
        rel = path.relative_to(artifacts)
        if (_SKIP_PARTS & set(rel.parts) or any(part.startswith("checkpoint-") for part in rel.parts)
                or any(".old-" in part for part in rel.parts)):  # an earlier run moved aside (RunStore)
            continue
        if path.suffix == ".jsonl":
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            jsonl[str(rel)] = sorted(set().union(*(row.keys() for row in rows)) if rows else set())
        elif path.suffix == ".json" and path.name in {"summary.json", "convergence.json", "manifest.json"}:
            summaries[str(rel)] = sorted(_keys(json.loads(path.read_text())))
    figures = sorted(p.stem for p in Path(figures_dir).glob("*.png"))
    return {"figures": figures, "jsonl": jsonl, "json": summaries}


if __name__ == "__main__":
    from rlxf.run import load_profile

    profile = load_profile(sys.argv[1] if len(sys.argv) > 1 else "smoke")
    print(json.dumps(collect(profile.artifacts_dir, profile.figures_dir), indent=1, sort_keys=True))
