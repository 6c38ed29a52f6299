"""The teaching exercises (`exercises/`): the reference solutions pass their tests, the blanks are blank, and the
suite's default test paths leave the (failing) blanks alone."""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
import tomllib

import pytest

from rlxf.paths import REPO_ROOT

BLANKS = {"ppo_exercises": ("gae", "policy_loss"), "preference_exercises": ("bradley_terry_loss", "dpo_loss")}


def test_the_exercise_tests_pass_on_the_reference_solutions():
    env = {**os.environ, "RLXF_EXERCISES": "solutions"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "exercises"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"pytest exercises/ on the solutions failed:\n{done.stdout[-3000:]}{done.stderr}"
    assert "16 passed" in done.stdout, done.stdout[-1000:]


@pytest.mark.parametrize("module", sorted(BLANKS))
def test_every_blank_is_still_blank(module):
    """The fill-in files ship unfilled: each function raises NotImplementedError (so `pytest exercises/` fails)."""
    blanks = importlib.import_module(f"exercises.{module}")
    for name in BLANKS[module]:
        function = getattr(blanks, name)
        with pytest.raises(NotImplementedError):
            function(*[None] * len(inspect.signature(function).parameters))


def test_default_testpaths_leave_the_exercises_out():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert config["testpaths"] == ["tests"], "a bare `pytest` would collect exercises/ and fail on the blanks"
