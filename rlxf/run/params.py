"""Parameter values for the runner: profiles and `-p` overrides read as YAML 1.2, and their types checked against
what the notebooks declare (a value of another type than the profile's or the notebook's default is an error)."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path
from typing import Any

import yaml

from rlxf.run.runlog import RunnerError


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's core schema: `010` is 10 (not octal 8), `1:30` a string (not 90),
    `yes`/`on` strings (not booleans), `1e-4` a float."""

    yaml_implicit_resolvers: dict = {}


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
):
    Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern), list(_first))


def _yaml12_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = loader.construct_scalar(node)
    base = {"0o": 8, "0x": 16}.get(text[:2], 10)
    return int(text[2:] if base != 10 else text, base)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _yaml12_int)


def load_yaml(text: str, where: str) -> Any:
    """YAML 1.2 text; an error starts with `where` ("<file>:", "-p '...': the value '...' is") and names the line."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise RunnerError(f"{where} not valid YAML{at} ({problem})") from None


def _scalar(value: str, item: str = "") -> Any:
    """A YAML 1.2 value: `8` an int, `1e-4` a float, `010` 10, `1:30` and `yes` strings."""
    return load_yaml(value, f"-p {item!r}: the value {value!r} is") if value else ""


def parse_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`key=value` (every selected notebook that declares key) and `NN:key=value` (notebook NN only).

    Values are read as YAML scalars, so `steps=8` is an int and `lr=1e-4` a float.
    """
    everywhere: dict[str, Any] = {}
    per_notebook: dict[str, dict[str, Any]] = {}
    for item in items:
        target, sep, value = item.partition("=")
        if not sep or not target:
            raise RunnerError(f"-p {item!r}: expected key=value or NN:key=value")
        parsed = _scalar(value, item)
        if ":" in target:
            number, key = target.split(":", 1)
            per_notebook.setdefault(number.zfill(2), {})[key] = parsed
        else:
            everywhere[target] = parsed
    return everywhere, per_notebook


def _type_problem(value: Any, default: Any) -> str | None:
    """Why `value` cannot stand where the notebook's literal `default` stands, or None if it can."""
    if default is None:
        return None
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "a boolean (true/false)"
    if isinstance(default, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "a number"
        return None if math.isfinite(value) else "a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, list | tuple):
        if not isinstance(value, list | tuple):
            return "a list"
        if default:  # the elements must be of the kind the default's first element is
            problems = [_type_problem(v, default[0]) for v in value]
            return next((f"a list of {p.split(' ', 1)[1]}s" for p in problems if p), None)
        return None
    if isinstance(default, dict):
        return None if isinstance(value, dict) else "a mapping"
    return None


def check_types(path: Path, declared: dict[str, dict], params: dict[str, Any], sources: dict[str, str],
                profile_values: dict[str, Any] | None = None) -> None:
    """Every parameter must be of the type of the notebook's literal default (an int where it declares `8`, ...); where
    the notebook leaves it None (its value comes from the profile), of the type of the profile's value."""
    for key, value in params.items():
        info = declared.get(key)
        if info is None or key in ("artifacts_dir", "figures_dir"):
            continue
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            continue  # not a literal: nothing to compare with
        what = f"its default is {info['default']}"
        if default is None and profile_values and profile_values.get(key) is not None:
            default, what = profile_values[key], f"the profile's value is {profile_values[key]!r}"
        problem = _type_problem(value, default)
        if problem:
            raise RunnerError(f"{sources.get(key, 'profile')}: parameter {key!r} of {path.name} must be {problem} "
                              f"({what}), got {value!r}")
