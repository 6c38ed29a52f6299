"""Executed notebooks made fit to commit: `results/<profile>/notebooks/NN_*.ipynb` with their outputs and figures, but
no widget state, no progress-bar redraws and no absolute paths of the machine that ran them; the folder stays small."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from rlxf.paths import REPO_ROOT

MAX_NOTEBOOKS_BYTES = 20 * 2**20
"""the most `results/<profile>/notebooks/` may hold (every executed notebook together)"""
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# Image types dropped where the same output also has a PNG (the committed copies show figures as PNG only).
OTHER_IMAGES = ("image/svg+xml", "image/jpeg", "application/pdf")


def _machine_paths() -> list[tuple[str, str]]:
    """(absolute prefix, what stands for it), longest first. The notebooks ran in notebooks/, so the repository is
    `..` and the folder that holds it `../..` (the data in ../shared/data reads `../../shared/data`)."""
    pairs = {str(REPO_ROOT): "..", str(Path.home()): "~"}
    if len(REPO_ROOT.parent.parts) > 1:
        pairs[str(REPO_ROOT.parent)] = "../.."
    if not Path(sys.prefix).resolve().is_relative_to(REPO_ROOT):
        pairs[str(Path(sys.prefix).resolve())] = "<venv>"
    return sorted(pairs.items(), key=lambda pair: -len(pair[0]))


def scrub_paths(text: str, pairs: list[tuple[str, str]] | None = None) -> str:
    """`text` with every absolute path of this machine (repository, its parent, the venv, home) made relative."""
    for prefix, short in pairs if pairs is not None else _machine_paths():
        if len(Path(prefix).parts) > 1:  # never "/" alone
            text = re.sub(re.escape(prefix) + r"(?=[/\\\"'\s:,)\]]|$)", short, text)
    return text


def _last_redraw(text: str) -> str:
    """A progress bar redraws its line with carriage returns: keep what each line finally showed."""
    return "\n".join(line.rsplit("\r", 1)[-1] for line in text.split("\n"))


def _clean_output(output: dict[str, Any]) -> dict[str, Any] | None:
    """The output without widget views (None when that is all it was) and with PNG as its only image type."""
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        text = _last_redraw("".join(text) if isinstance(text, list) else text)
        return {**output, "text": text} if text.strip() else None
    data = output.get("data")
    if not isinstance(data, dict):
        return output
    if WIDGET_VIEW in data:  # a tqdm.notebook bar or another widget: its state is not kept, so it shows nothing
        return None
    if "image/png" in data:
        data = {kind: value for kind, value in data.items() if kind not in OTHER_IMAGES}
    return {**output, "data": data}


def clean_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """An executed notebook (nbformat JSON) as committed: no widget state or views, no progress-bar redraws, PNG
    images, the machine's absolute paths made relative (`scrub_paths`)."""
    notebook = json.loads(scrub_paths(json.dumps(notebook)))
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook.get("cells", []):
        if "outputs" in cell:
            cell["outputs"] = [kept for kept in map(_clean_output, cell["outputs"]) if kept is not None]
    return notebook


def publish_notebooks(executed: list[Path], target: Path, max_bytes: int = MAX_NOTEBOOKS_BYTES) -> list[Path]:
    """Write each executed notebook, cleaned, to `target/<its name>`, replacing what `target` held; refuse (and write
    nothing) when together they would exceed `max_bytes`, naming the largest."""
    from rlxf.run.runlog import RunnerError

    texts = {}
    for path in executed:
        try:
            notebook = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise RunnerError(f"cannot publish the executed notebook {path}: {err}") from None
        texts[Path(path).name] = json.dumps(clean_notebook(notebook), indent=1, ensure_ascii=False) + "\n"
    sizes = {name: len(text.encode()) for name, text in texts.items()}
    if sum(sizes.values()) > max_bytes:
        by_size = sorted(sizes.items(), key=lambda item: -item[1])
        largest = ", ".join(f"{name} {size / 2**20:.1f} MB" for name, size in by_size)
        raise RunnerError(f"the executed notebooks take {sum(sizes.values()) / 2**20:.1f} MB, more than the "
                          f"{max_bytes / 2**20:.0f} MB that {target} may hold ({largest}); nothing was published: "
                          "make the largest ones show fewer or smaller outputs")
    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.ipynb"):
        if stale.name not in texts:
            stale.unlink()
    written = []
    for name, text in texts.items():
        (target / name).write_text(text)
        written.append(target / name)
    return written
