"""rlxf.run.report: the README's measured numbers are the committed results, formatted, and nothing else."""

import json

import pytest

from rlxf.paths import REPO_ROOT
from rlxf.run.report import fmt, render, replace_section, section_in


def test_fmt_by_hand():
    assert fmt(0.582) == "0.582" and fmt(12267) == "12,267" and fmt(1193.7) == "1,193.7" and fmt(True) == "yes"
    assert fmt([0.6, 1.39], "gain, paired 95% CI") == "0.6 to 1.39"
    assert fmt([0.6, 1.39], "before -> after") == "0.6 / 1.39"
    assert fmt({"base": {"Democrat": 81.0}}) == "base: (Democrat 81.0)"
    assert fmt([[0.53, 0.619], [0.5, 0.6]], "accuracy CI") == "[0.53 to 0.619] and [0.5 to 0.6]"


def _results(tmp_path):
    root = tmp_path / "demo"
    (root / "ppo").mkdir(parents=True)
    (root / "run_summary.json").write_text(json.dumps({
        "machine": {"cpu": "AMD EPYC", "cores": 2, "torch_threads": 2, "torch": "2.13.0+cpu", "gpu": None},
        "total_seconds": 130.0, "wall_seconds": 100.0, "jobs": 2,
        "threads_timeline": [{"key": "01", "threads": 1, "at_s": 0.0}, {"key": "04", "threads": 1, "at_s": 0.0},
                             {"key": "04", "threads": 2, "at_s": 1230.4}],
        "notebooks": [{"notebook": "01_data_hydration.ipynb", "seconds": 10.2, "threads": 2,
                       "precision": "precision bf16 on cpu: x"},
                      {"notebook": "04_lora_ppo.ipynb", "seconds": 119.8, "precision": "precision fp32 on cpu: y"}]}))
    (root / "headline.json").write_text(json.dumps({"sentiment": {"ppo": {"gain": 0.96, "ci": [0.6, 1.39]}}}))
    (root / "ppo" / "summary.json").write_text(json.dumps({"data": "shared", "sentiment gain, 95% CI": [0.6, 1.39]}))
    return root


def test_render_names_each_file_and_carries_its_numbers(tmp_path):
    text = render(_results(tmp_path))
    assert "| `01_data_hydration` | 10 | 2 | bf16 on cpu |" in text and "| sum of the notebooks | 130 | | |" in text
    assert "**wall clock**, up to 2 notebooks at once | **100** (1.7 min)" in text
    assert "changed while running (`threads_timeline`): 04 to 2 at 1,230 s." in text  # starts are not changes
    assert "**04** (`results/demo/ppo/summary.json`)\n- sentiment gain, 95% CI: 0.6 to 1.39" in text
    assert "- `sentiment`: ppo: (gain 0.96, ci [0.6 / 1.39])" in text
    assert "data: shared" not in text  # said once, from the manifest


def test_a_missing_file_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match="run_summary.json"):
        render(tmp_path / "nothing")


def test_replace_section_round_trip():
    readme = "# x\n<!-- results:demo:start -->\nold\n<!-- results:demo:end -->\ntail\n"
    new = replace_section(readme, "new\n", "demo")
    assert section_in(new, "demo") == "new\n" and new.endswith("tail\n")
    with pytest.raises(ValueError, match="once each"):
        replace_section("# no markers\n", "x", "demo")



def test_the_readme_quotes_the_committed_demo_results():
    """The README's measured section is exactly what the committed results/demo/ files render to: a number changed
    in either place without the other fails here (regenerate with `python -m rlxf.run.report --write-readme`)."""
    readme = (REPO_ROOT / "README.md").read_text()
    assert section_in(readme, "demo") == render(REPO_ROOT / "results" / "demo", "demo")
