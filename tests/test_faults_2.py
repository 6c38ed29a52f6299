"""Faults, round 2 (issue 26): secrets a hostile judge server echoes in headers or encodings, PPO settings that
would turn the method upside down, outputs where nobody asked, runner values and signals, hydration duplicates and
stale tables, and errors that must name their cause. Every case failed (or hung, or leaked) before its fix."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import urllib.parse
from http.server import BaseHTTPRequestHandler

import pytest

from rlxf.rewards.judge import HTTPJudge
from tests.stubs import local_server

SECRET = "sk-round2-0123456789abcdefghijklmnopqrstu"
KEY_ENV = "RLXF_JUDGE_API_KEY"


def leaked(text) -> bool:
    """True when `text` holds 8 characters in a row of the key, also with whitespace removed (a key split across
    lines) or after decoding base64, hex, %-escapes and \\u-escapes."""
    text = str(text)
    forms = [text, "".join(text.split()), urllib.parse.unquote(text)]
    with contextlib.suppress(Exception):
        forms.append(text.encode().decode("unicode_escape"))
    for form in list(forms):
        for token in form.replace('"', " ").split():
            forms += _decodings(token)
    return any(SECRET[i: i + 8] in form for form in forms for i in range(len(SECRET) - 7))


def _decodings(token: str) -> list[str]:
    """`token` read as base64 (standard, URL-safe) and as hex, where it is one."""
    padded, found = token + "=" * (-len(token) % 4), []
    for decode, text in ((base64.b64decode, padded), (base64.urlsafe_b64decode, padded), (bytes.fromhex, token)):
        with contextlib.suppress(Exception):
            found.append(decode(text).decode("latin-1"))
    return found


def encodings(key: str) -> dict[str, str]:
    """The forms of the key a hostile server echoes."""
    bearer = f"Bearer {key}"
    return {"base64": base64.b64encode(bearer.encode()).decode(), "base64_key": base64.b64encode(key.encode()).decode(),
            "base64_shifted": base64.b64encode(b"xy" + key.encode()).decode(),
            "urlsafe": base64.urlsafe_b64encode(key.encode()).decode(),
            "percent": "".join(f"%{byte:02X}" for byte in key.encode()),
            "json_escape": "".join(f"\\u{ord(c):04x}" for c in key), "hex": key.encode().hex(),
            "split_lines": "\n".join(key[i: i + 5] for i in range(0, len(key), 5)),
            "spaced": " ".join(key)}


class EchoStub(BaseHTTPRequestHandler):
    """Echoes the Authorization header back: in a response header, a redirect's Location, or an encoded body."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        auth = self.headers.get("Authorization", "")
        self.server.seen.append(auth)
        mode = self.server.mode
        key = auth.removeprefix("Bearer ")
        if mode == "header":
            body = json.dumps({"choices": [{"message": {"content": "Verdict: Yes."}}]}).encode()
            self._send(200, body, {"X-Echo": auth, "Set-Cookie": f"k={key}"})
        elif mode == "location":
            self._send(302, b"moved", {"Location": f"http://127.0.0.1:9/steal?k={key}&a={auth}"})
        elif mode.startswith("body_"):
            self._send(200, b"x" * 50 + b" " + encodings(key)[mode[5:]].encode() + b" tail")
        elif mode.startswith("content_"):
            content = "Echo " + encodings(key)[mode[8:]] + "\nVerdict: Yes."
            self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())

    def _send(self, status, data, headers=None):
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


# ------------------------------------------------------------------------------------------------ secrets


@pytest.mark.parametrize("mode", ["header", "location"])
def test_debug_logging_of_the_http_stack_never_shows_the_key(key, mode, caplog):
    with local_server(EchoStub, mode=mode, seen=[]) as server, caplog.at_level(logging.DEBUG):
        reply = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0).generate(["Is it good?"])[0]
    assert server.seen == [f"Bearer {key}"]
    assert reply.error == (None if mode == "header" else "redirect")
    assert caplog.records, "DEBUG logging was on: something is logged"
    assert not leaked(caplog.text) and not leaked(reply.detail) and not leaked(reply.text)


@pytest.mark.parametrize("form", sorted(encodings(SECRET)))
@pytest.mark.parametrize("where", ["body", "content"])
def test_an_echoed_key_is_redacted_in_its_common_encodings(key, form, where, caplog):
    with local_server(EchoStub, mode=f"{where}_{form}", seen=[]) as server, caplog.at_level(logging.DEBUG):
        reply = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0).generate(["Is it good?"])[0]
    assert server.seen == [f"Bearer {key}"]
    assert not any(leaked(text) for text in (reply.text, reply.detail, caplog.text, repr(reply))), (reply, form)


@pytest.mark.parametrize("suffix", ["\n", "  ", "\r\n", "\t"])
def test_a_key_read_from_a_file_is_stripped_before_use(monkeypatch, suffix):
    monkeypatch.setenv(KEY_ENV, " " + SECRET + suffix)
    with local_server(EchoStub, mode="header", seen=[]) as server:
        reply = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0).generate(["Is it good?"])[0]
    assert server.seen == [f"Bearer {SECRET}"] and reply.error is None


@pytest.mark.parametrize("bad", [SECRET[:10] + " " + SECRET[10:], SECRET[:10] + "\n" + SECRET[10:],
                                 SECRET[:10] + "\x01" + SECRET[10:], SECRET + "\x7f", SECRET[:10] + "é" + SECRET[10:]])
def test_a_key_with_whitespace_or_control_characters_is_refused_without_showing_it(monkeypatch, bad, caplog):
    monkeypatch.setenv(KEY_ENV, bad)
    with pytest.raises(ValueError, match=rf"{KEY_ENV} has .* at position \d+") as error:
        HTTPJudge("http://127.0.0.1:9", "judge-model")
    assert not leaked(str(error.value))
    # Set only after construction: an error value before any connection, not retried, not the key.
    monkeypatch.delenv(KEY_ENV)
    with local_server(EchoStub, mode="header", seen=[]) as server:
        judge = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=3, backoff_s=5.0)
        monkeypatch.setenv(KEY_ENV, bad)
        with caplog.at_level(logging.DEBUG):
            reply = judge.generate(["Is it good?"])[0]
    assert server.seen == [] and reply.error == "bad_key" and KEY_ENV in reply.detail
    assert not leaked(reply.detail) and not leaked(caplog.text)


# ------------------------------------------------------------------------------------------------ PPO settings


def ppo_settings(**overrides):
    from rlxf.algos.ppo import PPOSettings

    return PPOSettings(**{**dict(batch_size=4, max_new_tokens=2, ppo_epochs=1, progress_bar=False), **overrides})


@pytest.mark.parametrize("overrides, message", [
    ({"horizon": 0.5}, r"horizon must be an int >= 1"),
    ({"horizon": 1, "batch_size": 8}, r"horizon \(1\) must be >= batch_size \(8\).*negative"),
    ({"num_minibatches": 1.5}, r"num_minibatches must be an int"),
    ({"checkpoint_every": 2.5}, r"checkpoint_every must be an int >= 0"),
    ({"max_new_tokens": 3.5}, r"max_new_tokens must be an int >= 1"),
    ({"batch_size": 2.5}, r"batch_size must be an int >= 1"),
    ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32 - 1\]"),
    ({"seed": 2**40}, r"seed must be an int"),
    ({"seed": 1.5}, r"seed must be an int"),
    ({"learning_rate": float("inf")}, r"learning_rate must be finite"),
    ({"init_kl_coef": float("nan")}, r"init_kl_coef must be finite"),
    ({"init_kl_coef": float("inf")}, r"init_kl_coef must be finite"),
    ({"vf_coef": float("nan")}, r"vf_coef must be finite"),
    ({"missing_eos_penalty": float("inf")}, r"missing_eos_penalty must be finite"),
    ({"missing_eos_penalty": float("nan")}, r"missing_eos_penalty must be finite"),
])
def test_ppo_settings_that_change_the_method_are_refused_naming_the_field(overrides, message):
    with pytest.raises(ValueError, match=rf"PPOSettings\.{message}"):
        ppo_settings(**overrides)


def test_the_adaptive_kl_coefficient_never_turns_negative():
    from rlxf.algos.ppo import AdaptiveKLController

    controller = AdaptiveKLController(0.1, target=6.0, horizon=1)
    with pytest.raises(ValueError, match=r"8 samples with the adaptive KL horizon 1.*negative"):
        controller.update(current_kl=0.0, n_steps=8)
    controller = AdaptiveKLController(0.1, target=6.0, horizon=8)
    for _ in range(50):
        controller.update(current_kl=0.0, n_steps=8)
    assert controller.value > 0


@pytest.fixture(scope="module")
def tiny_ppo():
    from rlxf.algos.ppo import PPOTrainer
    from rlxf.lm.models import load_causal_lm

    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    return lambda **overrides: PPOTrainer(model, tokenizer, ppo_settings(**overrides))


PROMPTS = ["What is justice?", "How are you today?", "The movie was", "I think the government"]


@pytest.mark.parametrize("rewards, message", [
    (lambda p, c: {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}, r"reward_fn gave a dict \(unordered"),
    (lambda p, c: {0.1, 0.2, 0.3, 0.4}, r"reward_fn gave a set \(unordered"),
    (lambda p, c: __import__("torch").ones(2, 2), r"reward_fn gave a Tensor of shape \(2, 2\)"),
    (lambda p, c: __import__("numpy").ones((2, 2)), r"reward_fn gave a ndarray of shape \(2, 2\)"),
    (lambda p, c: [1e39] * 4, r"non-finite reward 1e\+39.*float32"),
])
def test_rewards_must_be_a_sequence_of_the_batch_length(tiny_ppo, rewards, message):
    with pytest.raises(ValueError, match=rf"step 1: {message}"):
        tiny_ppo().train(PROMPTS, rewards, steps=1)


def test_huge_rewards_give_an_error_naming_the_term_and_the_scale(tiny_ppo):
    with pytest.raises(FloatingPointError, match=r"step 1: non-finite loss.*value loss is inf.*rewards reach 1e\+30"):
        tiny_ppo().train(PROMPTS, lambda p, c: [1e30, -1e30, 1e30, 0.0], steps=1)


def test_num_minibatches_that_do_not_divide_the_batch_run_every_minibatch(tiny_ppo, monkeypatch):
    import torch

    trainer = tiny_ppo(num_minibatches=3)
    calls = []
    step = trainer.optimizer.step
    monkeypatch.setattr(trainer.optimizer, "step", lambda *a, **k: (calls.append(1), step(*a, **k))[1])
    trainer.step(["a b", "c d", "e f", "g h"], [torch.tensor([5, 6]), torch.tensor([7]), torch.tensor([8, 9]),
                                                torch.tensor([10])], [1.0, 0.0, 0.5, 0.2])
    assert len(calls) == 3


@pytest.mark.parametrize("response, message", [
    ([5, 10**7], r"responses\[0\] has the token id 10000000 outside the tokenizer's vocabulary"),
    ([5, -3], r"responses\[0\] has the token id -3 outside"),
    ([5.5, 6.0], r"responses\[0\] must hold integer token ids"),
])
def test_out_of_vocabulary_or_fractional_token_ids_are_named(tiny_ppo, response, message):
    with pytest.raises(ValueError, match=message):
        tiny_ppo().step(["a b"], [response], [1.0])


# ------------------------------------------------------------------------------------------------ outputs where asked


@pytest.mark.parametrize("value, message", [
    ("", r"artifacts_dir is empty"), ("   ", r"artifacts_dir is empty"), ("$UNSET_DIR/x", r"unexpanded environment"),
    (".", r"repository root"), ("notebooks", r"under notebooks/"), ("notebooks/out", r"under notebooks/"),
])
def test_an_empty_or_unexpanded_output_path_is_an_error(tmp_path, value, message, monkeypatch):
    from rlxf.paths import REPO_ROOT
    from rlxf.run import runner as run
    from tests.test_run import _notebook, _profile

    monkeypatch.chdir(REPO_ROOT)
    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass")}
    with pytest.raises(run.RunnerError, match=message):
        run.plan(_profile(tmp_path), notebooks, None, [f"artifacts_dir={value}"])
    with pytest.raises(run.RunnerError, match=message.replace("artifacts_dir", "figures_dir")):
        run.plan(_profile(tmp_path), notebooks, None, [f"figures_dir={value}"])


def test_settings_output_dir_empty_is_an_error_and_tilde_is_expanded(tmp_path, monkeypatch):
    from rlxf.infra.checkpoint import RunStore

    with pytest.raises(ValueError, match=r"PPOSettings.output_dir is empty"):
        RunStore("", state_file="s.json", kind="PPO", unit="step", owner="PPOSettings")
    monkeypatch.setenv("HOME", str(tmp_path))
    store = RunStore("~/runs/a", state_file="s.json", kind="PPO", unit="step", owner="PPOSettings")
    assert store.output_dir == tmp_path / "runs" / "a"


def test_notebook_setup_refuses_an_empty_artifacts_dir():
    from rlxf.run.notebook import setup

    with pytest.raises(ValueError, match=r"artifacts_dir is empty"):
        setup(seed=0, data_dir="fixtures", artifacts_dir="", hydrate=False)


# ------------------------------------------------------------------------------------------------ runner values


@pytest.mark.parametrize("item, expected", [("seed=010", 10), ("seed=1:30", "1:30"), ("flag=yes", "yes"),
                                            ("lr=1e-4", 1e-4), ("x=0x10", 16), ("seed=-3", -3),
                                            ("v=.inf", float("inf"))])
def test_parameters_are_read_as_yaml_1_2(item, expected):
    from rlxf.run import runner as run

    assert run.parse_overrides([item])[0] == {item.split("=")[0]: expected}


def test_a_sexagesimal_or_yes_value_is_refused_where_an_int_or_bool_is_declared(tmp_path):
    from rlxf.run import runner as run
    from tests.test_run import _notebook, _profile

    notebooks = {"01": _notebook(tmp_path / "01_a.ipynb", "pass", params='profile = "x"\nseed = 0\ndata_dir = ""\n'
                                 'artifacts_dir = ""\nfigures_dir = ""\nsteps = 1\nflag = False\n')}
    assert run.plan(_profile(tmp_path), notebooks, None, ["seed=010"])[0][2]["seed"] == 10
    with pytest.raises(run.RunnerError, match=r"parameter 'seed' of 01_a.ipynb must be an integer.*'1:30'"):
        run.plan(_profile(tmp_path), notebooks, None, ["seed=1:30"])
    with pytest.raises(run.RunnerError, match=r"parameter 'flag' of 01_a.ipynb must be a boolean.*'yes'"):
        run.plan(_profile(tmp_path), notebooks, None, ["flag=yes"])


def test_a_profile_yaml_syntax_error_names_the_file_and_line(tmp_path):
    from rlxf.run import runner as run

    (tmp_path / "bad.yaml").write_text("figures_dir: f\nartifacts_dir: a\nparams: {profile: bad\n")
    with pytest.raises(run.RunnerError, match=r"bad\.yaml: not valid YAML at line \d+"):
        run.load_profile("bad", configs_dir=tmp_path)


def test_a_run_summary_of_another_shape_is_kept(tmp_path):
    from rlxf.run import runner as run

    profile = _runner_profile(tmp_path)
    profile.artifacts_dir.mkdir(parents=True)
    (profile.artifacts_dir / "run_summary.json").write_text('{"runs": [1, 2, 3]}')
    run._write_summary(profile, [run.NotebookRun("01", "01_a.ipynb", 1.0, [], "x")])
    kept = list(profile.artifacts_dir.glob("run_summary.unknown-*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text()) == {"runs": [1, 2, 3]}
    assert run.read_summary(profile.artifacts_dir)["notebooks"][0]["key"] == "01"


def _runner_profile(tmp_path):
    from tests.test_run import _profile

    return _profile(tmp_path)


CHILD_RUNNER = r"""
import os, signal, sys, time
from pathlib import Path
from rlxf.run import runner as run
from tests.test_run import _notebook, _profile

tmp = Path(sys.argv[1])
pids = tmp / "pids"
pids.mkdir()
def spawn(command, env):
    import subprocess
    key = command[command.index("--only") + 1]
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    (pids / key).write_text(str(child.pid))
    return child
run._spawn = spawn
notebooks = {k: _notebook(tmp / f"{k}_a.ipynb", "pass") for k in ("04", "05")}
profile = _profile(tmp)
steps = run.plan(profile, notebooks, None, [])
try:
    run.execute_parallel(profile, steps, 2, [])
except run.RunnerError as err:
    print("stopped:", err, flush=True)
    sys.exit(3)
"""


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_sigterm_to_a_parallel_run_stops_every_child(tmp_path, signame):
    import os
    import signal
    import subprocess
    import sys
    import time

    from rlxf.paths import REPO_ROOT

    parent = subprocess.Popen([sys.executable, "-c", CHILD_RUNNER, str(tmp_path)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pids_dir = tmp_path / "pids"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(pids_dir.glob("*"))) < 2:
        time.sleep(0.1)
    pids = [int(p.read_text()) for p in pids_dir.glob("*")]
    assert len(pids) == 2, parent.communicate(timeout=30)[0] if parent.poll() is not None else "children not started"
    parent.send_signal(getattr(signal, signame))
    output = parent.communicate(timeout=60)[0]
    try:
        alive = []
        for pid in pids:
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
                time.sleep(0.1)
            else:
                alive.append(pid)
        assert not alive, f"children left running after {signame}: {alive}\n{output}"
        assert parent.returncode == 3 and f"stopped by {signame}" in output
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ hydration


def test_a_duplicated_plato_file_is_read_once(tmp_path, capsys):
    import shutil

    from rlxf.data import hydrate, read_table, write_fixtures

    data = write_fixtures(tmp_path / "data")
    once = hydrate(data, tmp_path / "once", sources=["plato"])["plato"]["turns"]
    first = sorted((data / "plato").glob("*.txt"))[0]
    shutil.copy(first, data / "plato" / "zz_copy_of_the_first.txt")
    manifest = hydrate(data, tmp_path / "twice", sources=["plato"])
    assert manifest["plato"]["turns"] == once
    assert "zz_copy_of_the_first.txt has the same content as" in capsys.readouterr().out
    turns = read_table(tmp_path / "twice", "plato_turns")
    train = set(turns.loc[turns["split"] == "train", "utterance"])
    assert not train & set(turns.loc[turns["split"] == "test", "utterance"])


def test_a_table_from_another_data_dir_is_not_read_back(tmp_path, capsys):
    from rlxf.data import hydrate, read_table, write_fixtures

    first, second = write_fixtures(tmp_path / "a"), write_fixtures(tmp_path / "b")
    out = tmp_path / "tables"
    hydrate(first, out, sources=["political", "mona"])
    assert (out / "political.parquet").is_file()
    hydrate(second, out, sources=["mona"])
    assert "removed political.parquet (the tables were built from another data_dir" in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match=r"political.parquet: table not found"):
        read_table(out, "political")
    assert len(read_table(out, "mona"))


def test_save_figure_refuses_an_empty_figures_dir(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from rlxf.analysis.plotting import save_figure

    monkeypatch.chdir(tmp_path)
    fig = plt.figure()
    with pytest.raises(ValueError, match=r"figures_dir is empty"):
        save_figure(fig, "", "01_class_balance")
    plt.close(fig)
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------------ checkpoints


def _length_mod_3(prompts, completions):
    """A reward both runs of a resume test share (a run's identity includes its reward's code and name)."""
    return [float(len(x) % 3) for x in completions]


def _two_checkpoints(tiny_ppo, directory):
    run = tiny_ppo(output_dir=str(directory), checkpoint_every=1, keep_checkpoints=None, seed=3)
    run.train(PROMPTS, _length_mod_3, steps=2)
    return directory / "checkpoint-2"


@pytest.mark.parametrize("resume", [True, "auto"])
@pytest.mark.parametrize("damage", ["no_state", "no_checksums_and_a_flipped_adapter"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(tiny_ppo, tmp_path, damage, resume):
    latest = _two_checkpoints(tiny_ppo, tmp_path / "run")
    if damage == "no_state":
        (latest / "trainer_state.json").unlink()
        expected = r"trainer_state.json: missing"
    else:
        (latest / "checksums.json").unlink()
        adapter = next(latest.rglob("adapter_model.safetensors"))
        data = bytearray(adapter.read_bytes())
        data[-100] ^= 0x01
        adapter.write_bytes(bytes(data))
        expected = r"checksums.json: missing beside a checkpoint"
    run = tiny_ppo(output_dir=str(tmp_path / "run"), checkpoint_every=1, keep_checkpoints=None, seed=3)
    with pytest.warns(UserWarning, match=rf"corrupt checkpoint: .*{expected}.*falling back"):
        history = run.train(PROMPTS, _length_mod_3, steps=2, resume=resume)
    assert [row["step"] for row in history] == [1, 2]  # step 2 trained again from checkpoint-1
    assert len(list((tmp_path / "run").glob("checkpoint-2.corrupt-*"))) == 1
