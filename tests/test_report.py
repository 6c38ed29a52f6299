"""rlxf.run.report: the README's measured numbers are the committed results, formatted, and nothing else."""

import json

import pytest

from rlxf.paths import REPO_ROOT
from rlxf.run.report import box_time, fmt, render, replace_section, section_in, time_line, write_notebook_times


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


def _notebook(path, box_line="old"):
    cells = [{"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# 04 · x\n"]},
             {"cell_type": "markdown", "id": "b", "metadata": {},
              "source": ["> **Time on the demo profile:** <!-- demo-time -->", box_line, "<!-- /demo-time -->\n",
                         "> more\n"]}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1) + "\n")


def test_time_line_sums_the_prerequisites_and_names_the_file(tmp_path):
    run = json.loads((_results(tmp_path) / "run_summary.json").read_text())
    run["notebooks"] += [{"notebook": f"{k}_x.ipynb", "seconds": 100.0, "threads": 1} for k in ("02", "03")]
    line = time_line(run, "04_lora_ppo")
    # 119.8 s own; + 01 (10.2) + 02 (100) + 03 (100) = 330 s with its prerequisites
    assert line.startswith("2.0 min (120 s) for this notebook, 5.5 min (330 s) with 01, 02, 03 run first")
    assert "thread" not in line and line.endswith("2-core AMD EPYC CPU; `results/demo/run_summary.json`)")
    first = time_line(run, "01_data_hydration")  # no prerequisites; its threads are known
    assert first.startswith("10 s for this notebook (") and "2 threads at start;" in first
    assert time_line(run, "07_x").startswith("not measured yet")  # a notebook the committed run did not run
    del run["notebooks"][-1]  # 03 missing: 04's sum cannot be formed
    with pytest.raises(KeyError, match=r"\['03'\]"):
        time_line(run, "04_lora_ppo")


def test_write_notebook_times_rewrites_only_the_marked_line(tmp_path):
    results = _results(tmp_path)
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _notebook(notebooks / "01_data_hydration.ipynb")
    assert write_notebook_times(results, "demo", notebooks) == [notebooks / "01_data_hydration.ipynb"]
    assert box_time(notebooks / "01_data_hydration.ipynb").startswith("10 s for this notebook")
    source = json.loads((notebooks / "01_data_hydration.ipynb").read_text())["cells"][1]["source"]
    assert source[0].startswith("> **Time on the demo profile:** <!-- demo-time -->10 s") and source[-1] == "> more\n"
    assert write_notebook_times(results, "demo", notebooks) == []  # a second run changes nothing
    (notebooks / "02_sft.ipynb").write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# 02 · no box\n"]}]}))
    with pytest.raises(ValueError, match="02_sft.ipynb: expected one markdown cell"):
        write_notebook_times(results, "demo", notebooks)


def test_every_notebook_box_quotes_the_committed_demo_run():
    """Each notebook's opening box states the time that results/demo/run_summary.json holds for it: a changed run or
    a hand-edited box fails here (regenerate with `python -m rlxf.run.report --write-notebooks`)."""
    run = json.loads((REPO_ROOT / "results" / "demo" / "run_summary.json").read_text())
    notebooks = sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert notebooks
    for path in notebooks:
        assert box_time(path) == time_line(run, path.stem), f"{path.name}: the opening box's time is stale"
