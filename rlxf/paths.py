"""Where things live: repository root, artifacts, real data, model cache, figures."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def artifacts_dir() -> Path:
    """Git-ignored directory for caches, checkpoints, adapters, executed notebooks and logs."""
    return Path(os.environ.get("RLXF_ARTIFACTS_DIR") or REPO_ROOT / "artifacts")


def model_cache_dir() -> Path:
    """Where converted models (e.g. SmolLM2 from GGUF to safetensors) are cached across clones."""
    return Path(os.environ.get("RLXF_CACHE_DIR") or Path.home() / ".cache" / "rlxf" / "models")


def figures_dir() -> Path:
    """The committed figures of the demo and gpu profiles."""
    return REPO_ROOT / "figures"


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path | None:
    """The real-data directory: the explicit one, else $RLXF_DATA_DIR, else ../shared/data beside the repo, else None.

    An explicit or environment directory that does not exist is an error (a typo should not silently fall back
    to fixtures); only the implicit ../shared/data may be absent.
    """
    for origin, value in (("data_dir parameter", explicit), ("RLXF_DATA_DIR", os.environ.get("RLXF_DATA_DIR"))):
        if value not in (None, ""):
            path = Path(value).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"{origin} points to {str(path)!r}, which is not a directory")
            return path.resolve()
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared.resolve() if shared.is_dir() else None


def require_inputs(needed: Mapping[str, tuple[str | os.PathLike, str]], profile: str) -> None:
    """Stop with a clear error when an input that an earlier notebook writes is missing.

    `needed`: {what: (path, notebook that writes it)}; the first missing one is named with the command that makes it.
    """
    for what, (path, notebook) in needed.items():
        if not Path(path).exists():
            raise FileNotFoundError(f"{what} not found at {path}: run notebook {notebook} on the {profile} profile "
                                    f"first (python -m rlxf.run --profile {profile} --only {notebook})")


def output_path(value: str | os.PathLike, parameter: str) -> Path:
    """A directory a user named for outputs, absolute: `~` expanded; an empty value (an unset `$VAR` the shell
    expanded), an unexpanded `$VAR`, the repository root or a folder under notebooks/ is a ValueError naming
    `parameter` (outputs land only where asked, and never over a notebook)."""
    text = os.fspath(value) if isinstance(value, (str, os.PathLike)) else None
    if text is None or not text.strip():
        raise ValueError(f"{parameter} is empty ({value!r}): name a directory (an unset $VARIABLE expands to nothing; "
                         "an empty path would write into the current directory)")
    if "$" in text:
        raise ValueError(f"{parameter}={text!r} holds an unexpanded environment variable; expand it or name the "
                         "directory")
    path = Path(text).expanduser().resolve()
    notebooks = REPO_ROOT / "notebooks"
    if path == REPO_ROOT or path == notebooks or notebooks in path.parents:
        raise ValueError(f"{parameter}={text!r} resolves to {path}: outputs never go to the repository root or "
                         "under notebooks/ (executed notebooks would overwrite the sources); use artifacts/...")
    return path
