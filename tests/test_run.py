"""The batch runner: profiles, parameter checking, failure reporting, and notebook 01 on the smoke profile."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from rlxf.paths import REPO_ROOT
from rlxf.run import runlog
from rlxf.run import runner as run
from rlxf.run.notebook import mark_ready


def _notebook(path: Path, body: str, params: str | None = None) -> Path:
    if params is None:
        params = 'profile = "x"\nseed = 0\ndata_dir = ""\nartifacts_dir = ""\nfigures_dir = ""\nsteps = 1\n'
    nb = new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, new_code_cell(body)]
    nbformat.write(nb, path)
    return path


def _profile(tmp_path: Path, **notebooks) -> run.Profile:
    return run.Profile("t", tmp_path / "figures", tmp_path / "artifacts", {"profile": "t", "seed": 1, "data_dir": ""},
                       notebooks)


def test_profiles_load_and_declare_only_known_keys():
    for name in run.PROFILES:
        profile = run.load_profile(name)
        assert profile.params["profile"] == name
        assert set(profile.params) | {"artifacts_dir", "figures_dir"} == set(run.COMMON_PARAMS)
    assert run.load_profile("smoke").figures_dir != run.load_profile("demo").figures_dir, "smoke must not overwrite"


def test_unknown_profile_names_the_file(tmp_path):
    with pytest.raises(run.RunnerError, match=r"no profile 'nope'.*nope\.yaml"):
        run.load_profile("nope")


def test_overrides_are_yaml_values():
    everywhere, per_nb = run.parse_overrides(["steps=8", "lr=1e-4", "2:name=abc", "flag=false"])
    assert everywhere == {"steps": 8, "lr": 1e-4, "flag": False}
    assert per_nb == {"02": {"name": "abc"}}
    with pytest.raises(run.RunnerError, match="key=value"):
        run.parse_overrides(["steps"])


def test_undeclared_parameter_is_an_error(tmp_path):
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "print(steps)")}
    profile = _profile(tmp_path)
    assert run.plan(profile, notebooks, None, ["steps=3"])[0][2]["steps"] == 3
    with pytest.raises(run.RunnerError, match=r"no selected notebook declares.*\['stepz'\]"):
        run.plan(profile, notebooks, None, ["stepz=3"])
    with pytest.raises(run.RunnerError, match=r"01_a.ipynb does not declare.*\['lr'\]"):
        run.plan(profile, notebooks, None, ["01:lr=3"])
    with pytest.raises(run.RunnerError, match=r"configs/t.yaml: 01_a.ipynb does not declare.*\['epochs'\]"):
        run.plan(_profile(tmp_path, **{"01": {"epochs": 2}}), notebooks, None, [])


def test_notebook_without_common_parameters_is_an_error(tmp_path):
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass", params="seed = 0\n")}
    with pytest.raises(run.RunnerError, match=r"01_a.ipynb: its parameters cell does not declare.*profile"):
        run.plan(_profile(tmp_path), notebooks, None, [])


def test_only_selects_and_rejects_unknown_numbers(tmp_path):
    notebooks = {k: _notebook(tmp_path / f"{k}_n.ipynb", "pass") for k in ("01", "02", "03")}
    assert [k for k, _, _ in run.plan(_profile(tmp_path), notebooks, ["3", "01"], [])] == ["01", "03"]
    with pytest.raises(run.RunnerError, match=r"do not exist: \['09'\]"):
        run.plan(_profile(tmp_path), notebooks, ["09"], [])


def test_first_failure_stops_the_run_and_names_notebook_and_cell(tmp_path):
    notebooks = {
        "01": _notebook(tmp_path / "01_ok.ipynb",
                        "from pathlib import Path\nPath(artifacts_dir, 'ran01').write_text('y')"),
        "02": _notebook(tmp_path / "02_bad.ipynb", "raise ValueError('boom in 02')"),
        "03": _notebook(tmp_path / "03_never.ipynb",
                        "from pathlib import Path\nPath(artifacts_dir, 'ran03').write_text('y')"),
    }
    profile = _profile(tmp_path)
    steps = run.plan(profile, notebooks, None, [])
    with pytest.raises(run.RunnerError) as err:
        run.execute(profile, steps)
    message = str(err.value)
    assert "02_bad.ipynb failed at cell" in message and "ValueError: boom in 02" in message
    assert (profile.artifacts_dir / "ran01").exists() and not (profile.artifacts_dir / "ran03").exists()
    assert (profile.artifacts_dir / "notebooks" / "02_bad.failed.ipynb").exists(), "the failed notebook is kept"
    summary = json.loads((profile.artifacts_dir / "run_summary.json").read_text())
    assert [r["status"] for r in summary["notebooks"]] == ["ok", "failed"]
    assert summary["machine"]["cores"] >= 1 and summary["machine"]["torch_threads"] >= 1


def test_a_failed_rerun_keeps_the_last_good_notebook_and_summary(tmp_path):
    body = "from pathlib import Path\nif Path(artifacts_dir, 'break').exists():\n    raise ValueError('now broken')"
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass"), "02": _notebook(tmp_path / "02_b.ipynb", body)}
    profile = _profile(tmp_path)
    run.execute(profile, run.plan(profile, notebooks, None, []))
    good = (profile.artifacts_dir / "notebooks" / "02_b.ipynb").read_bytes()
    (profile.artifacts_dir / "break").write_text("y")
    with pytest.raises(run.RunnerError, match="now broken"):
        run.execute(profile, run.plan(profile, notebooks, ["02"], []))
    assert (profile.artifacts_dir / "notebooks" / "02_b.ipynb").read_bytes() == good
    assert (profile.artifacts_dir / "notebooks" / "02_b.failed.ipynb").exists()
    summary = json.loads((profile.artifacts_dir / "run_summary.json").read_text())
    assert [(r["key"], r["status"]) for r in summary["notebooks"]] == [("01", "ok"), ("02", "ok")]
    assert "last_failure" in summary["notebooks"][1]
    assert summary["total_seconds"] == round(sum(r["seconds"] for r in summary["notebooks"]), 1)


@pytest.mark.parametrize("item, message", [
    ("seed=[1", r"-p 'seed=\[1': the value '\[1' is not valid YAML"),
    ("seed=abc", r"-p: parameter 'seed' of 01_a.ipynb must be an integer .*got 'abc'"),
    ("seed=1: 2", r"parameter 'seed' of 01_a.ipynb must be an integer .*got \{1: 2\}"),
    ("seed=.inf", r"parameter 'seed' of 01_a.ipynb must be an integer"),
    ("seed=true", r"parameter 'seed' of 01_a.ipynb must be an integer"),
    ("01:lr=.inf", r"parameter 'lr' of 01_a.ipynb must be a finite number"),
    ("lr=fast", r"parameter 'lr' of 01_a.ipynb must be a number"),
    ("name=3", r"parameter 'name' of 01_a.ipynb must be a string"),
    ("sizes=[1, x]", r"parameter 'sizes' of 01_a.ipynb must be a list of integers"),
])
def test_parameters_must_have_the_type_of_the_notebooks_default(tmp_path, item, message):
    params = 'profile = "x"\nseed = 0\ndata_dir = ""\nartifacts_dir = ""\nfigures_dir = ""\n'
    params += 'lr = 0.1\nname = "a"\nsizes = [1, 2]\n'
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass", params=params)}
    assert run.plan(_profile(tmp_path), notebooks, None, ["lr=1", "sizes=[3]", "name=b"])[0][2]["lr"] == 1
    with pytest.raises(run.RunnerError, match=message):
        run.plan(_profile(tmp_path), notebooks, None, [item])


def test_profile_values_are_type_checked_too(tmp_path):
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass")}
    with pytest.raises(run.RunnerError, match=r"configs/t.yaml: parameter 'steps' of 01_a.ipynb must be an integer"):
        run.plan(_profile(tmp_path, **{"01": {"steps": "many"}}), notebooks, None, [])


def test_headlines_are_merged_with_the_total_and_published(tmp_path):
    body = ("from rlxf.run.notebook import record_headline\n"
            "record_headline(artifacts_dir, '{key}', {{'sentiment': {{'{key}': {value}}}, 'n{key}': 1}})")
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", body.format(key="01", value=0.5)),
                 "02": _notebook(tmp_path / "02_b.ipynb", body.format(key="02", value=2))}
    profile = _profile(tmp_path)
    run.execute(profile, run.plan(profile, notebooks, None, []))
    summary = json.loads((profile.artifacts_dir / "run_summary.json").read_text())
    headline = json.loads((profile.artifacts_dir / "headline.json").read_text())
    assert headline == {"sentiment": {"01": 0.5, "02": 2}, "n01": 1, "n02": 1,
                        f"total_{profile.name}_seconds": summary["total_seconds"]}
    (profile.artifacts_dir / "ppo").mkdir()
    (profile.artifacts_dir / "ppo" / "summary.json").write_text('{"gain": 1.5}')
    target = run.publish(profile, tmp_path / "results")
    assert target == tmp_path / "results" / profile.name
    assert json.loads((target / "ppo" / "summary.json").read_text()) == {"gain": 1.5}
    assert sorted(p.name for p in target.iterdir()) == ["headline.json", "notebooks", "ppo", "run_summary.json"]
    assert sorted(p.name for p in (target / "notebooks").iterdir()) == ["01_a.ipynb", "02_b.ipynb"]
    assert json.loads((target / "headline.json").read_text()) == headline
    published = json.loads((target / "run_summary.json").read_text())
    assert [entry["output"] for entry in published["notebooks"]] == ["01_a.ipynb", "02_b.ipynb"]
    assert published["total_seconds"] == summary["total_seconds"]


def test_two_notebooks_may_not_write_one_headline_number_differently(tmp_path):
    (tmp_path / "artifacts" / "headline").mkdir(parents=True)
    for key, value in (("01", 1), ("02", 2)):
        (tmp_path / "artifacts" / "headline" / f"{key}.json").write_text(json.dumps({"a": {"b": value}}))
    with pytest.raises(run.RunnerError, match="headline key 02.a.b is written by two notebooks"):
        runlog._write_headline(_profile(tmp_path), 1.0)


def test_publish_needs_a_run(tmp_path):
    with pytest.raises(run.RunnerError, match="nothing to publish"):
        run.publish(_profile(tmp_path), tmp_path / "results")


def test_summary_table_lists_figures():
    table = run.summary_table([run.NotebookRun("01", "01_x.ipynb", 1.25, ["01_a.png"], "out")])
    assert "01_x.ipynb" in table and "1.2" in table and "01_a.png" in table


def test_notebook_01_runs_on_the_smoke_profile(capsys):
    committed = {p: p.stat().st_mtime for p in (REPO_ROOT / "figures").glob("01_*.png")}
    assert run.main(["--profile", "smoke", "--only", "01"]) == 0
    out = capsys.readouterr().out
    assert "01_data_hydration.ipynb" in out and "01_class_balance.png" in out
    smoke = run.load_profile("smoke")
    for name in ("01_class_balance", "01_text_lengths", "01_party_words", "01_plato_turns", "01_mona_labels"):
        assert (smoke.figures_dir / f"{name}.png").stat().st_size > 10_000
    executed = nbformat.read(smoke.artifacts_dir / "notebooks" / "01_data_hydration.ipynb", as_version=4)
    text = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "FIXTURE CORPORA" in text, "the smoke run must say loudly that it used the fixtures"
    assert {p: p.stat().st_mtime for p in (REPO_ROOT / "figures").glob("01_*.png")} == committed


def test_a_notebook_run_without_parameters_uses_the_demo_values_and_leaves_figures_alone(tmp_path, monkeypatch):
    """Notebook 01 through papermill with no parameters at all, as a reader's Run All: the demo profile's values
    (min_word_count 10, smoke's is 3), its outputs in artifacts/demo/ (here moved by $RLXF_ARTIFACTS_DIR), nothing
    under figures/. The data are the fixture corpora, named by $RLXF_DATA_DIR as real data would be, with each tweet
    repeated in four wordings so that words reach the demo's min_word_count (the fixtures' 60 tweets do not)."""
    import pandas as pd
    import papermill

    from rlxf.data.source import locate_data

    fixtures, _ = locate_data("fixtures", tmp_path)
    tweets_csv = fixtures / "political" / "house_tweets_2018.csv"
    tweets = pd.read_csv(tweets_csv)
    pd.concat([tweets.assign(text=tweets.text + f" take {i}") for i in range(4)]).to_csv(tweets_csv, index=False)
    monkeypatch.setenv("RLXF_DATA_DIR", str(fixtures))
    monkeypatch.setenv("RLXF_ARTIFACTS_DIR", str(tmp_path / "artifacts"))
    committed = {p: p.stat().st_mtime for p in (REPO_ROOT / "figures").rglob("*")}
    path = run.discover_notebooks()["01"]
    papermill.execute_notebook(str(path), str(tmp_path / "01.ipynb"), cwd=str(path.parent), kernel_name="python3",
                               progress_bar=False)
    executed = nbformat.read(tmp_path / "01.ipynb", as_version=4)
    assert not [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    said = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    demo = run.load_profile("demo").notebooks["01"]
    assert "configs/demo.yaml, notebook 01:" in said and f"min_word_count={demo['min_word_count']}" in said
    assert demo["min_word_count"] != run.load_profile("smoke").notebooks["01"]["min_word_count"]
    assert sorted(p.name for p in (tmp_path / "artifacts" / "demo" / "figures").glob("01_*.png"))
    assert (tmp_path / "artifacts" / "demo" / "data" / "manifest.json").is_file()
    assert {p: p.stat().st_mtime for p in (REPO_ROOT / "figures").rglob("*")} == committed


def test_profile_params_fill_what_the_notebook_leaves_none(capsys):
    from rlxf.run.notebook import profile_params

    given = {"profile": "demo", "seed": None, "data_dir": None, "artifacts_dir": None, "figures_dir": None,
             "min_word_count": 4, "top_words": None, "strip_urls": None, "force": None, "hub_sources": None,
             "policy_model": None}  # a shared key 01 does not declare stays out
    filled = profile_params("demo", "01", given)
    demo = run.load_profile("demo")
    assert filled["top_words"] == demo.notebooks["01"]["top_words"] and "min_word_count" not in filled
    assert filled["policy_model"] == demo.shared["policy_model"]
    assert filled["figures_dir"] == str(demo.artifacts_dir / "figures") and filled["seed"] == demo.params["seed"]
    assert "set by papermill or by hand (these win): min_word_count=4" in capsys.readouterr().out
    moved = profile_params("demo", "01", {**given, "artifacts_dir": "/tmp/x"})
    assert moved["figures_dir"] == "/tmp/x/figures"
    with pytest.raises(KeyError, match=r"configs/demo.yaml sets \['top_words'\] for notebook 01, whose parameters"):
        profile_params("demo", "01", {k: v for k, v in given.items() if k != "top_words"})


def test_shared_parameters_reach_only_the_notebooks_that_declare_them(tmp_path):
    params = 'profile = "x"\nseed = 0\ndata_dir = ""\nartifacts_dir = ""\nfigures_dir = ""\n'
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass", params=params + "encoder = 'a'\n"),
                 "02": _notebook(tmp_path / "02_b.ipynb", "pass", params=params)}
    profile = _profile(tmp_path)
    profile.shared = {"encoder": "tiny-bert"}
    planned = {k: p for k, _, p in run.plan(profile, notebooks, None, [])}
    assert planned["01"]["encoder"] == "tiny-bert" and "encoder" not in planned["02"]
    profile.shared = {"encodr": "tiny-bert"}
    with pytest.raises(run.RunnerError, match=r"shared parameter\(s\) \['encodr'\] are declared by no notebook"):
        run.plan(profile, notebooks, None, [])


# What each notebook reads from earlier ones (docs/ARCHITECTURE.md, "What notebooks hand to each other").
NEEDS = {"00": [], "02": ["01"], "03": ["01", "02"], "04": ["01", "02", "03"], "05": ["01", "02"], "06": ["02", "05"],
         "07": ["01", "02", "03", "04"], "08": ["01", "02", "03"]}


def _smoke_inputs_for(key: str) -> None:
    """Run the notebooks `key` reads from unless this smoke profile already ran them: a test can run alone (-k)."""
    smoke = run.load_profile("smoke")
    done = {entry["key"] for entry in run.read_summary(smoke.artifacts_dir)["notebooks"] if entry["status"] == "ok"}
    missing = [k for k in NEEDS.get(key, []) if k not in done]
    if missing:
        assert run.main(["--profile", "smoke", "--only", *missing]) == 0


def test_every_notebook_has_its_inputs_listed():
    assert set(NEEDS) == set(run.discover_notebooks()) - {"01"}


@pytest.mark.parametrize("key", [k for k in run.discover_notebooks() if k != "01"])
def test_every_notebook_runs_on_the_smoke_profile(key, capsys):
    """Each later notebook, alone on the smoke profile (tiny models, fixture corpora), writes its figures."""
    _smoke_inputs_for(key)
    capsys.readouterr()
    assert run.main(["--profile", "smoke", "--only", key]) == 0
    name = run.discover_notebooks()[key].name
    assert name in capsys.readouterr().out
    smoke = run.load_profile("smoke")
    entry = {r["key"]: r for r in json.loads((smoke.artifacts_dir / "run_summary.json").read_text())["notebooks"]}[key]
    assert entry["status"] == "ok" and entry["figures"], f"{name} wrote no {key}_*.png figure"
    if key in ("02", "04"):  # the notebooks that save adapters: one adapter per directory, its base model named
        configs = sorted((smoke.artifacts_dir / "adapters").glob("*/adapter_config.json"))
        assert configs, f"{name} saved no adapter"
        for config in configs:
            assert json.loads(config.read_text())["base_model_name_or_path"] == "tiny-llama", config
            assert not [p for p in config.parent.iterdir() if p.is_dir()], f"{config.parent} holds nested adapters"


def test_smoke_run_writes_the_committed_names():
    """Figures, metric keys and summary fields keep their names (tests/smoke_names.json; see tests/smoke_names.py)."""
    from tests.smoke_names import collect

    smoke = run.load_profile("smoke")
    expected = json.loads((REPO_ROOT / "tests" / "smoke_names.json").read_text())
    if collect(smoke.artifacts_dir, smoke.figures_dir)["figures"] != expected["figures"]:
        assert run.main(["--profile", "smoke"]) == 0  # run alone (-k): make every notebook's outputs first
    assert collect(smoke.artifacts_dir, smoke.figures_dir) == expected


def test_papermill_injects_the_profile_name_directories_and_overrides_only():
    """The notebook reads the rest from configs/<profile>.yaml itself: only what differs from it is injected."""
    demo = run.load_profile("demo")
    steps = {key: params for key, _, params in run.plan(demo, run.discover_notebooks(), None, ["04:rlxf_steps=2"])}
    assert steps["04"]["imdb_steps"] == demo.notebooks["04"]["imdb_steps"]  # the plan holds every value (--list)
    assert set(run.injected(demo, "04", steps["04"])) == {*run.COMMON_PARAMS, "rlxf_steps"}
    assert run.injected(demo, "04", steps["04"])["rlxf_steps"] == 2
    assert set(run.injected(demo, "03", steps["03"])) == set(run.COMMON_PARAMS)
    assert run.injected(demo, "03", {**steps["03"], "mona_epochs": 2}) == run.injected(demo, "03", steps["03"])
    assert run.injected(demo, "03", {**steps["03"], "mona_epochs": 3})["mona_epochs"] == 3
    assert demo.figures_dir == demo.artifacts_dir / "figures" and demo.publish_figures_dir == REPO_ROOT / "figures"


def test_an_override_of_a_parameter_left_none_must_have_the_profiles_type(tmp_path):
    params = 'profile = "x"\nseed = 0\ndata_dir = ""\nartifacts_dir = ""\nfigures_dir = ""\nsteps = None\n'
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass", params=params)}
    profile = _profile(tmp_path, **{"01": {"steps": 3}})
    assert run.plan(profile, notebooks, None, ["steps=4"])[0][2]["steps"] == 4
    with pytest.raises(run.RunnerError, match=r"-p: parameter 'steps' .* an integer \(the profile's value is 3\)"):
        run.plan(profile, notebooks, None, ["steps=many"])


def test_publish_copies_the_figures_of_finished_notebooks_only(tmp_path):
    body = ("import matplotlib\nmatplotlib.use('agg')\nimport matplotlib.pyplot as plt\n"
            "from rlxf.analysis.plotting import save_figure\n"
            "fig, ax = plt.subplots()\nax.plot([0, 1])\nsave_figure(fig, figures_dir, '{key}_line')\n{then}")
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", body.format(key="01", then="")),
                 "02": _notebook(tmp_path / "02_b.ipynb", body.format(key="02", then="raise ValueError('late')"))}
    profile = _profile(tmp_path)
    profile.publish_figures_dir = tmp_path / "committed"
    with pytest.raises(run.RunnerError, match="late"):
        run.execute(profile, run.plan(profile, notebooks, None, []))
    assert (profile.figures_dir / "02_line.png").exists(), "the failed notebook saved its figure before failing"
    target = run.publish(profile, tmp_path / "results")
    assert sorted(p.name for p in (tmp_path / "committed").iterdir()) == ["01_line.png"]
    assert sorted(p.name for p in (target / "notebooks").iterdir()) == ["01_a.ipynb"]


def test_overriding_the_output_directories_moves_the_runners_outputs_too(tmp_path):
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass")}
    profile = _profile(tmp_path)
    overrides = [f"artifacts_dir={tmp_path / 'elsewhere'}", f"figures_dir={tmp_path / 'figs'}"]
    steps = run.plan(profile, notebooks, None, overrides)
    assert steps[0][2]["artifacts_dir"] == str(tmp_path / "elsewhere") == str(profile.artifacts_dir)
    assert steps[0][2]["figures_dir"] == str(tmp_path / "figs") == str(profile.figures_dir)
    moved = run.plan(_profile(tmp_path), notebooks, None, [f"artifacts_dir={tmp_path / 'other'}"])
    assert moved[0][2]["figures_dir"] == str(tmp_path / "other" / "figures"), "figures follow the artifacts"
    run.execute(profile, steps)
    assert (tmp_path / "elsewhere" / "notebooks" / "01_a.ipynb").exists()
    assert (tmp_path / "elsewhere" / "run_summary.json").exists()


def test_require_inputs_names_the_missing_input_and_the_notebook_that_writes_it(tmp_path):
    from rlxf.paths import require_inputs

    (tmp_path / "present").mkdir()
    require_inputs({"present": (tmp_path / "present", "02")}, "smoke")
    with pytest.raises(FileNotFoundError, match=r"party classifier not found at .*absent: run notebook 03 .*--only 03"):
        inputs = {"present": (tmp_path / "present", "02"), "party classifier": (tmp_path / "absent", "03")}
        require_inputs(inputs, "smoke")


def test_a_notebook_section_may_not_redefine_a_shared_key(tmp_path):
    (tmp_path / "x.yaml").write_text("publish_figures_dir: f\nartifacts_dir: a\nparams: {profile: x}\n"
                                     "shared: {encoder: tiny-bert}\nnotebooks: {'03': {encoder: minilm-l6}}\n")
    with pytest.raises(run.RunnerError, match=r"x.yaml: notebooks: '03' redefines the shared parameter\(s\) "
                                              r"\['encoder'\]"):
        run.load_profile("x", tmp_path)
    (tmp_path / "y.yaml").write_text("artifacts_dir: a\nparams: {profile: y, seed: 0}\n"
                                     "shared: {seed: 1}\n")
    with pytest.raises(run.RunnerError, match=r"y.yaml: params redefines the shared parameter\(s\) \['seed'\]"):
        run.load_profile("y", tmp_path)


def test_every_profile_sets_every_parameter_the_notebook_leaves_none():
    """The profile is the one place a value is set: every parameter a notebook leaves None (all but `profile` and the
    directories the runner and rlxf.run.notebook.profile_params derive) is set by every profile, shared or in the
    notebook's section, with one type across the profiles."""
    import ast

    import papermill

    profiles = {name: run.load_profile(name) for name in run.PROFILES}
    for key, path in run.discover_notebooks().items():
        declared = papermill.inspect_notebook(str(path))
        left_none = {name for name, info in declared.items() if ast.literal_eval(info["default"]) is None}
        assert left_none == set(declared) - {"profile"}, f"{path.name} sets a value itself"
        wanted = left_none - {"artifacts_dir", "figures_dir"}
        kinds: dict[str, set] = {}
        for name, p in profiles.items():
            values = {**p.params, **{k: v for k, v in p.shared.items() if k in declared}, **p.notebooks.get(key, {})}
            assert set(values) - {"profile"} == wanted, (
                f"configs/{name}.yaml: for {path.name} it misses {sorted(wanted - set(values))}, "
                f"sets undeclared {sorted(set(values) - wanted - {'profile'})}")
            for param, value in values.items():
                kinds.setdefault(param, set()).add(type(value).__name__)
        mixed = {param: kind for param, kind in kinds.items() if len(kind) > 1}
        assert not mixed, f"{path.name}: the profiles set these with different types: {mixed}"
    gpu = profiles["gpu"]
    assert {"policy_model", "judge_model", "encoder", "report_to"} <= set(gpu.shared)
    assert "/" in gpu.shared["policy_model"] and "/" in gpu.shared["judge_model"], "gpu: hub models"
    assert gpu.notebooks["04"]["ppo_batch_size"] >= 64 and gpu.notebooks["04"]["imdb_steps"] >= 200
    assert all(p.shared["report_to"] == "none" for name, p in profiles.items() if name != "gpu")


@pytest.mark.parametrize("found", ["here", None, "elsewhere"])
def test_the_runner_uses_the_rlxf_kernel_when_jupyter_knows_it(found, monkeypatch, capsys):
    import sys

    pythons = {"here": sys.executable, None: None, "elsewhere": "/some/other/venv/bin/python"}
    monkeypatch.setattr(run, "_kernel_python", lambda name: pythons[found] if name == "rlxf" else None)
    assert run.pick_kernel() == ("rlxf" if found == "here" else "python3")
    said = capsys.readouterr().out
    assert not said if found == "here" else "using python3" in said
    assert ("make lab" in said) == (found is None) and ("/some/other/venv" in said) == (found == "elsewhere")


def test_the_running_notebook_shows_its_cells_unless_quiet(tmp_path, capsys):
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass")}
    profile = _profile(tmp_path)
    run.execute(profile, run.plan(profile, notebooks, None, []))
    assert "01 cells" in capsys.readouterr().err
    run.execute(profile, run.plan(profile, notebooks, None, []), progress=False)
    assert "01 cells" not in capsys.readouterr().err


def test_dry_run_takes_smoke_sizes_tiny_models_and_its_own_directory():
    gpu = run.load_profile("gpu")
    planned = {key: params for key, _, params in run.dry_run(gpu, run.discover_notebooks(), None, ["05:rounds=3"])}
    smoke = {key: params for key, _, params in run.plan(run.load_profile("smoke"), run.discover_notebooks(), None, [])}
    assert gpu.name == "gpu-dry-run" and gpu.artifacts_dir == REPO_ROOT / "artifacts" / "gpu-dry-run"
    assert gpu.figures_dir == gpu.artifacts_dir / "figures"
    assert planned["04"]["policy_model"] == "tiny-llama" and planned["03"]["encoder"] == "tiny-bert"
    assert planned["04"]["imdb_steps"] == smoke["04"]["imdb_steps"] and planned["04"]["kl_sweep"] == [0.0]
    assert planned["02"]["data_dir"] == "fixtures" and planned["02"]["dtype"] == smoke["02"]["dtype"]
    assert planned["02"]["report_to"] == "none" and planned["02"]["profile"] == "gpu"  # a dry run tracks to nowhere
    asked = {key: params for key, _, params in run.dry_run(run.load_profile("gpu"), run.discover_notebooks(), None,
                                                           ["report_to=tensorboard"])}
    assert asked["02"]["report_to"] == "tensorboard"  # ... unless -p asks
    assert planned["05"]["rounds"] == 3  # -p wins
    assert planned["01"]["artifacts_dir"] == str(gpu.artifacts_dir)


@pytest.mark.dry_run
def test_the_gpu_profile_dry_run_runs_every_notebook(capsys):
    """Every notebook with the gpu profile's parameters (smoke sizes, tiny models, CPU): the profile is runnable."""
    # A dry run tracks to nowhere: it runs in a venv without the tensorboard package that the gpu profile asks for.
    assert run.main(["--profile", "gpu", "--dry-run", "--quiet"]) == 0
    summary = run.read_summary(REPO_ROOT / "artifacts" / "gpu-dry-run")
    assert summary["profile"] == "gpu-dry-run"
    assert [e["key"] for e in summary["notebooks"] if e["status"] == "ok"] == list(run.discover_notebooks())
    assert list((REPO_ROOT / "artifacts" / "gpu-dry-run" / "figures").glob("04_*.png"))


class _FakeProcesses:
    """subprocess.Popen stand-in for execute_parallel: each 'notebook' finishes on its second poll (or its number in
    `polls`) and records the run as a child runner would (run_summary.json), or fails when its key is in `fail`."""

    def __init__(self, profile, fail=(), polls=None, stages=None):
        self.profile, self.fail, self.log, self.running = profile, set(fail), [], set()
        self.polls, self.budget_files = polls or {}, {}
        self.stages = stages or {}  # key -> stages it marks ready at its first poll (mark_ready, as a notebook would)

    def __call__(self, command, env):
        key = command[command.index("--only") + 1]
        self.budget_files[key] = Path(env["RLXF_THREADS_FILE"])
        self.log.append(("start", key, env["OMP_NUM_THREADS"], frozenset(self.running)))
        self.running.add(key)
        fake, polls = self, []

        class Process:
            returncode = None

            def poll(self):
                polls.append(1)
                for stage in fake.stages.get(key, ()):
                    if len(polls) == 1:
                        mark_ready(fake.profile.artifacts_dir, key, stage)
                        fake.log.append(("ready", f"{key}:{stage}"))
                if len(polls) < fake.polls.get(key, 2):
                    return None
                fake.running.discard(key)
                self.returncode = 1 if key in fake.fail else 0
                if self.returncode == 0:
                    fake.log.append(("done", key))
                    run._write_summary(fake.profile, [run.NotebookRun(key, f"{key}_x.ipynb", 1.0, [], "out")])
                return self.returncode

        return Process()


def _parallel(tmp_path, monkeypatch, fail=(), polls=None, stages=None):
    profile = _profile(tmp_path)
    fake = _FakeProcesses(profile, fail, polls, stages)
    monkeypatch.setattr(run, "_spawn", fake)
    monkeypatch.setattr(run.time, "sleep", lambda s: None)
    monkeypatch.setattr(run.os, "cpu_count", lambda: 2)
    steps = [(key, Path(f"{key}_x.ipynb"), {}) for key in sorted(run.DEPENDS)]
    return profile, fake, steps


def test_parallel_runs_start_each_notebook_after_what_it_reads(tmp_path, monkeypatch):
    profile, fake, steps = _parallel(tmp_path, monkeypatch)
    runs = run.execute_parallel(profile, steps, 2, ["--quiet"])
    assert sorted(r.key for r in runs) == sorted(run.DEPENDS)
    finished = []
    for event in fake.log:
        if event[0] in ("done", "ready"):
            finished.append(event[1])
        else:
            _, key, threads, alongside = event
            # no stage is marked ready here: every dependency waits for its notebook to finish
            needed = {run.notebook_of(d) for d in run.DEPENDS[key]}
            assert needed <= set(finished), f"{key} started before {run.DEPENDS[key]} finished"
            assert len(alongside) < 2  # never more than --jobs at once
            if alongside:
                assert threads == "1", key
            if key == "01":  # alone at the start (00 waits for 02): every core
                assert threads == "2"
    starts = [e[1] for e in fake.log if e[0] == "start"]
    assert starts[:2] == ["01", "02"]  # the long chain first
    assert all(starts.index("00") > finished.index(after) for after in run.START_AFTER["00"])
    summary = json.loads((profile.artifacts_dir / "run_summary.json").read_text())
    headline = json.loads((profile.artifacts_dir / "headline.json").read_text())
    assert summary["jobs"] == 2 and headline[f"total_{profile.name}_seconds"] == summary["wall_seconds"]


def test_a_notebook_left_running_alone_gets_the_freed_cores(tmp_path, monkeypatch):
    # 04 runs long; 06 and 08 finish beside it, and 07 waits for 04: 04 then runs alone and should get both cores.
    profile, fake, steps = _parallel(tmp_path, monkeypatch, polls={"04": 8})
    run.execute_parallel(profile, steps, 2, [])
    timeline = json.loads((profile.artifacts_dir / "run_summary.json").read_text())["threads_timeline"]
    shares_04 = [entry["threads"] for entry in timeline if entry["key"] == "04"]
    assert shares_04[0] == 1 and shares_04[-1] == 2, timeline
    assert fake.budget_files["04"].read_text().strip() == "2"  # what its kernel reads at its next long loop
    assert [entry["at_s"] for entry in timeline] == sorted(entry["at_s"] for entry in timeline)


def test_split_cores_gives_every_notebook_a_share():
    assert run.split_cores(2, ["04"]) == {"04": 2}
    assert run.split_cores(2, ["04", "08"]) == {"04": 1, "08": 1}
    assert run.split_cores(5, ["a", "b"]) == {"a": 3, "b": 2}
    assert run.split_cores(1, ["a", "b", "c"]) == {"a": 1, "b": 1, "c": 1}  # never 0: oversubscribed instead
    assert run.split_cores(4, []) == {}


def test_a_failed_parallel_notebook_stops_what_depends_on_it(tmp_path, monkeypatch):
    profile, fake, steps = _parallel(tmp_path, monkeypatch, fail={"03"})
    with pytest.raises(run.RunnerError, match=r"03 failed .*not started: .*04"):
        run.execute_parallel(profile, steps, 2, [])
    assert "04" not in {event[1] for event in fake.log if event[0] == "start"}


def test_every_notebook_has_its_dependencies_declared():
    assert set(run.DEPENDS) == set(run.discover_notebooks()) == set(run.LAUNCH_ORDER)
    placed: list[str] = []  # a topological order exists: no notebook waits, through others, for itself
    while len(placed) < len(run.DEPENDS):
        free = [k for k, deps in run.DEPENDS.items()
                if k not in placed and all(run.notebook_of(d) in placed for d in deps)]
        assert free, f"a cycle among {sorted(set(run.DEPENDS) - set(placed))}"
        placed.extend(free)


def test_every_stage_a_notebook_waits_for_is_marked_by_that_notebook():
    for key, deps in run.DEPENDS.items():
        for dep in deps:
            if ":" in dep:
                notebook, stage = dep.split(":")
                cells = nbformat.read(run.discover_notebooks()[notebook], as_version=4).cells
                source = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
                assert f'mark_ready(artifacts, "{notebook}", "{stage}")' in source, (key, dep)


def test_a_stage_marked_ready_starts_the_reader_before_the_notebook_ends(tmp_path, monkeypatch):
    # 03 marks "rewards" at once and runs on; 04 (which waits for 03:rewards) starts while 03 still runs, as soon as
    # a job is free; a marker left by an earlier run is removed when 03 starts, so it cannot start 04 early.
    profile, fake, steps = _parallel(tmp_path, monkeypatch, polls={"03": 12}, stages={"03": ["rewards"]})
    stale = run.ready_marker(profile.artifacts_dir, "03", "rewards")
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("0\n")
    run.execute_parallel(profile, steps, 2, [])
    events = [(e[0], e[1]) for e in fake.log]
    assert events.index(("start", "03")) < events.index(("ready", "03:rewards")) < events.index(("start", "04"))
    assert events.index(("start", "04")) < events.index(("done", "03"))
    assert events.index(("start", "07")) > events.index(("done", "03"))  # 07 needs all of 03


def test_mark_ready_names_a_bad_stage(tmp_path):
    assert mark_ready(tmp_path, "03", "rewards") == run.ready_marker(tmp_path, "03", "rewards")
    assert (tmp_path / "ready" / "03.rewards").is_file()
    with pytest.raises(ValueError, match="a stage is lower-case"):
        mark_ready(tmp_path, "03", "Rewards done")
