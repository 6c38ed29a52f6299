"""The package's rooms import downward only (docs/ARCHITECTURE.md, "Layers"), and the import graph has no cycle."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

from rlxf.paths import REPO_ROOT

# Lowest first; a module may import modules of its own layer or lower ones. Each room is a folder of `rlxf/` (or one of
# the few top-level modules), so `ls rlxf` shows the layers.
LAYERS = [
    {"rlxf.paths", "rlxf.progress", "rlxf.analysis", "rlxf.infra"},  # ground floor: no model code
    {"rlxf.lm", "rlxf.data"},  # a name becomes a model and samples; corpora become tables
    {"rlxf.rewards", "rlxf.eval"},  # every reward_fn; measuring a policy
    {"rlxf.algos"},  # PPO, SFT, DPO, TRL's online trainers
    {"rlxf.selfplay"},  # two bots, ratings, the two-bot trainer
    {"rlxf.run", "rlxf.train"},  # the notebook runner, its records and report; stages from YAML
]
TOP_LEVEL_MODULES = {"__init__.py", "paths.py", "progress.py", "train.py"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    for layer in LAYERS:
        for room in layer:
            if module == room or module.startswith(room + "."):
                return room
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py and the docs")


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """module -> the rlxf modules it imports (at the top or inside functions)."""
    graph = {}
    for path in sorted((REPO_ROOT / "rlxf").rglob("*.py")):
        name, deps = _module_name(path), set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rlxf"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {alias.name for alias in node.names if alias.name.startswith("rlxf")}
        graph[name] = deps - {name}
    return graph


def _layer(module: str) -> int:
    room = _room(module)
    return next(i for i, layer in enumerate(LAYERS) if room in layer)


@pytest.mark.parametrize("module", sorted(import_graph()))
def test_no_module_imports_a_higher_layer(module):
    if module == "rlxf":
        return
    upward = sorted(dep for dep in import_graph()[module] if _layer(dep) > _layer(module))
    assert not upward, f"{module} (layer {_layer(module)}) imports higher layers: {upward}"


def test_rooms_import_each_other_without_cycles():
    rooms: dict[str, set[str]] = {}
    for module, deps in import_graph().items():
        if module != "rlxf":
            rooms.setdefault(_room(module), set()).update(_room(d) for d in deps if _room(d) != _room(module))
    done, visiting = set(), []

    def visit(room: str) -> None:
        assert room not in visiting, f"import cycle between rooms: {' -> '.join([*visiting, room])}"
        if room in done:
            return
        visiting.append(room)
        for dep in sorted(rooms.get(room, ())):
            visit(dep)
        visiting.pop()
        done.add(room)

    for room in sorted(rooms):
        visit(room)


def test_size_limits_of_the_layout():
    """No module over 600 lines; the fixture builders stay small (their texts are package data files)."""
    lengths = {p: len(p.read_text().splitlines()) for p in (REPO_ROOT / "rlxf").rglob("*.py")}
    assert not {str(p): n for p, n in lengths.items() if n > 600}
    fixtures = [p for p in lengths if p.parent.name == "data" and "fixture" in p.name]
    assert fixtures and sum(lengths[p] for p in fixtures) <= 250


def test_one_home_for_lora_configs_and_adapter_switches():
    """`LoraConfig(` and every context manager that switches adapters live in rlxf/lm/adapters.py alone."""
    for path in (REPO_ROOT / "rlxf").rglob("*.py"):
        if path.relative_to(REPO_ROOT).as_posix() == "rlxf/lm/adapters.py":
            continue
        tree = ast.parse(path.read_text())
        calls = {node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                 for node in ast.walk(tree) if isinstance(node, ast.Call)}
        assert "LoraConfig" not in calls, f"{path.relative_to(REPO_ROOT)} builds a LoraConfig: use adapters.lora_config"
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
            if any("contextmanager" in ast.unparse(d) for d in fn.decorator_list):
                inner = {c.func.attr for c in ast.walk(fn)
                         if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)}
                where = f"{path.relative_to(REPO_ROOT)}:{fn.lineno} {fn.name}"
                assert not inner & {"set_adapter", "disable_adapter"}, f"{where} switches adapters: use using_adapter"


def test_the_top_level_shows_the_layers():
    """`ls rlxf`: the role folders of LAYERS and at most six modules."""
    top = REPO_ROOT / "rlxf"
    modules = {p.name for p in top.glob("*.py")}
    folders = {p.name for p in top.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms = {room.split(".")[1] for layer in LAYERS for room in layer}
    assert modules == TOP_LEVEL_MODULES and len(modules) <= 6
    assert folders == {room for room in rooms if f"{room}.py" not in modules}


def test_one_home_for_adapter_loading():
    """Saved adapters are loaded in rlxf/lm/adapters.py alone (PEFT's loaders are called nowhere else)."""
    for path in (REPO_ROOT / "rlxf").rglob("*.py"):
        if path.relative_to(REPO_ROOT).as_posix() == "rlxf/lm/adapters.py":
            continue
        tree = ast.parse(path.read_text())
        defs = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert not {d for d in defs if d.startswith("load_adapter")}, f"{path.relative_to(REPO_ROOT)} loads adapters"
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                owner = ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""
                peft_call = (name == "set_peft_model_state_dict" or (name == "from_pretrained" and "Peft" in owner)
                             or (name == "load_adapter" and isinstance(node.func, ast.Attribute)))
                assert not peft_call, f"{path.relative_to(REPO_ROOT)}:{node.lineno} loads an adapter"


# Files besides rlxf/lm/logprobs.py that may call log_softmax, each with its reason (listed in logprobs.py's docstring).
LOG_SOFTMAX_ALLOWED = {
    "rlxf/algos/ppo.py": "entropy_from_logits: the entropy of the policy's full next-token distribution (a loss term)",
}


def test_one_home_for_response_logprobs():
    """`log_softmax` is called in rlxf/lm/logprobs.py (one precision rule) and in the allow-listed files alone."""
    home = "rlxf/lm/logprobs.py"
    found = {path.relative_to(REPO_ROOT).as_posix() for path in (REPO_ROOT / "rlxf").rglob("*.py")
             if "log_softmax" in path.read_text()}
    assert home in found
    stray = sorted(found - {home} - set(LOG_SOFTMAX_ALLOWED))
    assert not stray, f"{stray} call log_softmax: use rlxf.lm.logprobs (or add the file to LOG_SOFTMAX_ALLOWED, why)"
    stale = sorted(set(LOG_SOFTMAX_ALLOWED) - found)
    assert not stale, f"{stale} no longer call log_softmax: remove them from LOG_SOFTMAX_ALLOWED"
    docstring = ast.get_docstring(ast.parse((REPO_ROOT / home).read_text())) or ""
    unlisted = sorted(path for path in LOG_SOFTMAX_ALLOWED if path not in docstring)
    assert not unlisted, f"{home}'s docstring does not name the exceptions {unlisted}"


def test_rlxf_ppo_imports_no_heavy_reward_dependencies():
    """`rlxf.rewards` loads its submodules on first use: a process that trains with rlxf's PPO does not carry TRL,
    datasets, pandas or scikit-learn (~130 MB of RSS), and every public name still imports."""
    import subprocess
    import sys

    heavy = ("trl", "datasets", "pandas", "sklearn")
    code = ("import sys, rlxf.algos.ppo; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    import rlxf.rewards

    assert all(getattr(rlxf.rewards, name) is not None for name in rlxf.rewards.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        rlxf.rewards.nothing_here  # noqa: B018
