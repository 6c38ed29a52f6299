"""Faults of training runs (and, at the end, of a hostile judge endpoint): kill -9 during a run and during a
checkpoint write, corrupt and bit-flipped checkpoints, a resume of another run, a new run in a used directory,
orphaned temporary directories, keep_checkpoints, bad inputs.

The kill -9 tests run a PPO run on tiny-llama in a child process (this file run as a script) and compare the resumed
history with an uninterrupted run of this process: resuming after a crash is exact.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch

from rlxf.algos.ppo import PPOSettings, PPOTrainer, RewardFunctionError
from rlxf.infra.checkpoint import (
    CorruptCheckpoint,
    RunMismatch,
    append_jsonl,
    clean_orphans,
    read_jsonl,
    verify_checkpoint,
)
from rlxf.lm.models import load_causal_lm
from rlxf.rewards.judge import Evaluator, EvaluatorSettings, HTTPJudge, JudgeError
from tests.stubs import local_server

PROMPTS = ["What is justice?", "How are you today?", "The movie was", "I think the government"]
STEPS = 6
ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.filterwarnings("ignore:Model has `tie_word_embeddings=True`:UserWarning"),
              pytest.mark.usefixtures("one_thread")]  # one_thread: tests/conftest.py


def settings(output_dir, **overrides) -> PPOSettings:
    """Tiny PPO on tiny-llama with a checkpoint every 2 steps and an adaptive KL (state that a resume must restore)."""
    values = dict(learning_rate=5e-3, batch_size=4, max_new_tokens=6, lora_target_modules=("q_proj", "v_proj",
                  "lm_head"), adaptive_kl=True, init_kl_coef=0.1, target_kl=0.5, horizon=20, seed=7,
                  checkpoint_every=2, keep_checkpoints=None, progress_bar=False,
                  output_dir=None if output_dir is None else str(output_dir))
    return PPOSettings(**{**values, **overrides})


def toy_reward(tokenizer, delay_s: float = 0.0):
    """The fraction of reply tokens with an id divisible by 8 (`delay_s`: a slow reward, so a kill lands mid-run)."""
    def reward_fn(prompts, completions):
        time.sleep(delay_s)
        ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in completions]
        return [sum(i % 8 == 0 for i in row) / max(len(row), 1) for row in ids]

    return reward_fn


def trainer(output_dir=None, **overrides) -> tuple[PPOTrainer, object]:
    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    return PPOTrainer(model, tokenizer, settings(output_dir, **overrides)), toy_reward(tokenizer)


def without_times(history):
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in history]


def assert_same_history(got, expected):
    assert [m["step"] for m in got] == [m["step"] for m in expected]
    for want, have in zip(without_times(expected), without_times(got), strict=True):
        for key, value in want.items():
            assert have[key] == pytest.approx(value, rel=1e-5, abs=1e-7, nan_ok=True), (want["step"], key)




@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The history of a run of STEPS steps that nothing interrupts."""
    run, reward_fn = trainer(tmp_path_factory.mktemp("uninterrupted"))
    return run.train(PROMPTS, reward_fn, steps=STEPS)


def test_same_seed_twice_gives_the_same_run(uninterrupted, tmp_path):
    run, reward_fn = trainer(tmp_path)
    assert_same_history(run.train(PROMPTS, reward_fn, steps=2), uninterrupted[:2])


# --------------------------------------------------------------------------------------------- kill -9


def child(output_dir: str, mode: str) -> None:
    """The child process: a PPO run of STEPS steps; "die-in-write" kills itself while checkpoint-4 is being written."""
    torch.set_num_threads(1)
    import rlxf.infra.checkpoint as checkpoint

    if mode == "die-in-write":
        write_manifest = checkpoint.write_manifest

        def dying(directory: Path) -> None:
            if directory.name.startswith(".checkpoint-4.tmp-"):
                os.kill(os.getpid(), signal.SIGKILL)  # the files are written, the manifest and the rename are not
            write_manifest(directory)

        checkpoint.write_manifest = dying
    run, _ = trainer(output_dir)
    run.train(PROMPTS, toy_reward(run.tokenizer, delay_s=0.3 if mode == "slow" else 0.0), steps=STEPS)


def start_child(output_dir: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, __file__, str(output_dir), mode], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_9_during_a_run_then_resume_gives_the_uninterrupted_history(uninterrupted, tmp_path):
    process = start_child(tmp_path, "slow")
    try:
        deadline = time.monotonic() + 300
        while not (tmp_path / "checkpoint-2").is_dir():
            assert process.poll() is None, process.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the child wrote no checkpoint-2"
            time.sleep(0.05)
        time.sleep(0.5)  # into step 3 (each step waits 0.3 s for its reward)
        process.send_signal(signal.SIGKILL)
        assert process.wait(60) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert not (tmp_path / f"checkpoint-{STEPS}").exists()  # it died before the end
    run, reward_fn = trainer(tmp_path)
    assert_same_history(run.train(PROMPTS, reward_fn, steps=STEPS, resume=True), uninterrupted)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, STEPS + 1))


def test_kill_9_during_a_checkpoint_write_leaves_the_previous_one_and_resume_is_exact(uninterrupted, tmp_path):
    process = start_child(tmp_path, "die-in-write")
    output = process.communicate(timeout=300)[0].decode()
    assert process.returncode == -signal.SIGKILL, output[-3000:]
    orphans = list(tmp_path.glob(".checkpoint-4.tmp-*"))
    assert len(orphans) == 1 and not (tmp_path / "checkpoint-4").exists()
    assert (orphans[0] / "optimizer.pt").is_file() and not (orphans[0] / "checksums.json").exists()
    assert verify_checkpoint(tmp_path / "checkpoint-2")
    run, reward_fn = trainer(tmp_path)
    assert_same_history(run.train(PROMPTS, reward_fn, steps=STEPS, resume=True), uninterrupted)
    assert not list(tmp_path.glob(".checkpoint-*"))  # the dead process's unfinished directory is gone


# --------------------------------------------------------------------------------------------- corrupt checkpoints


@pytest.fixture
def run_of_four(tmp_path):
    """A finished run of 4 steps with checkpoint-2 and checkpoint-4 -> (its directory, its history)."""
    run, reward_fn = trainer(tmp_path)
    return tmp_path, run.train(PROMPTS, reward_fn, steps=4)


def flip_a_bit(path: Path, offset: int = -100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_bit_flipped_adapter_falls_back_to_the_previous_checkpoint_with_a_warning(run_of_four):
    directory, history = run_of_four
    adapter = directory / "checkpoint-4" / "adapters" / "default" / "adapter_model.safetensors"
    flip_a_bit(adapter)  # still a loadable safetensors file: only the checksum can tell
    run, reward_fn = trainer(directory)
    with pytest.warns(UserWarning, match=r"corrupt checkpoint: .*adapter_model\.safetensors: its sha256 differs"):
        resumed = run.train(PROMPTS, reward_fn, steps=4, resume=True)
    assert_same_history(resumed, history)  # steps 3 and 4 trained again from checkpoint-2
    (corrupt,) = directory.glob("checkpoint-4.corrupt-*")  # kept for inspection, out of the way of later resumes
    assert (corrupt / "adapters" / "default" / "adapter_model.safetensors").is_file()
    assert verify_checkpoint(directory / "checkpoint-4")  # written again


@pytest.mark.parametrize("name", ["optimizer.pt", "rng_state.pt", "value_head.pt", "trainer_state.json"])
def test_truncated_files_are_named(run_of_four, name):
    directory, _ = run_of_four
    path = directory / "checkpoint-4" / name
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    run, _ = trainer(directory)
    with pytest.raises(CorruptCheckpoint, match=rf"checkpoint-4/{name}: its sha256 differs"):
        run.load_checkpoint(directory / "checkpoint-4")  # an explicit path: no fallback
    # checksums.json deleted beside a corrupt file: this rlxf's checkpoints (with a fingerprint) always have one, so
    # its absence is corruption, not "written by an older rlxf" (issue 26: that loaded the corrupt weights).
    (directory / "checkpoint-4" / "checksums.json").unlink()
    if name != "trainer_state.json":
        with pytest.raises(CorruptCheckpoint, match=r"checkpoint-4/checksums.json: missing beside a checkpoint"):
            run.load_checkpoint(directory / "checkpoint-4")
    else:
        with pytest.raises(CorruptCheckpoint, match=rf"checkpoint-4/{name}: not readable JSON"):
            run.load_checkpoint(directory / "checkpoint-4")


# --------------------------------------------------------------------------------------------- runs and directories


def test_resuming_another_run_is_an_error_saying_what_differs(run_of_four):
    directory, _ = run_of_four
    run, reward_fn = trainer(directory, seed=8)
    with pytest.raises(RunMismatch, match=r"checkpoint-4 belongs to another PPO run: settings.seed: 7 \(checkpoint\) "
                                          r"vs 8 \(this run\)"):
        run.train(PROMPTS, reward_fn, steps=6, resume=True)
    run, reward_fn = trainer(directory)
    with pytest.raises(RunMismatch, match=r"data.n_prompts: 4 \(checkpoint\) vs 3"):
        run.train(PROMPTS[:3], reward_fn, steps=6, resume=True)
    assert run.step_count == 0 and len((directory / "metrics.jsonl").read_text().splitlines()) == 4  # untouched


def test_a_new_run_in_a_used_directory_moves_the_old_run_aside(run_of_four):
    directory, history = run_of_four
    run, reward_fn = trainer(directory, seed=8)  # the case: run B (seed 8) where run A (seed 7) went to 4
    with pytest.warns(UserWarning, match=r"held an earlier PPO run; moved it to .*\.old-\d{8}-\d{6}"):
        b_history = run.train(PROMPTS, reward_fn, steps=2)
    (old,) = directory.parent.glob(f"{directory.name}.old-*")
    assert sorted(p.name for p in old.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
    assert_same_history([json.loads(line) for line in (old / "metrics.jsonl").read_text().splitlines()], history)
    assert sorted(p.name for p in directory.glob("checkpoint-*")) == ["checkpoint-2"]
    # Run B resumes run B, not run A's higher-numbered checkpoint.
    again, reward_fn = trainer(directory, seed=8)
    resumed = again.train(PROMPTS, reward_fn, steps=3, resume=True)
    assert_same_history(resumed[:2], b_history) and len(resumed) == 3


def test_orphaned_temporary_directories_of_dead_processes_are_cleaned(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = os.getppid()
    (tmp_path / f".checkpoint-5.tmp-{dead.pid}").mkdir()
    (tmp_path / f".checkpoint-5.tmp-{alive}").mkdir()  # another live process may still be writing it
    (tmp_path / f".checkpoint-3.old-{dead.pid}").mkdir()  # killed between atomic_dir's renames: the only copy
    (tmp_path / f".checkpoint-3.old-{dead.pid}" / "trainer_state.json").write_text("{}")
    removed = clean_orphans(tmp_path)
    assert [p.name for p in removed] == [f".checkpoint-5.tmp-{dead.pid}"]
    assert (tmp_path / f".checkpoint-5.tmp-{alive}").is_dir()
    assert (tmp_path / "checkpoint-3" / "trainer_state.json").is_file()


def test_read_jsonl_reads_what_append_jsonl_wrote_and_names_a_bad_line(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2, "b": "x"}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 2, "b": "x"}]
    path.write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:3: not valid JSON"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"rows.jsonl:2: expected a JSON object, got list"):
        read_jsonl(path)


def test_keep_checkpoints(tmp_path):
    for keep, kept in ((2, ["checkpoint-4", "checkpoint-5"]), (0, [f"checkpoint-{i}" for i in range(1, 6)])):
        run, reward_fn = trainer(tmp_path / str(keep), checkpoint_every=1, keep_checkpoints=keep, max_new_tokens=2)
        run.train(PROMPTS, reward_fn, steps=5)
        assert sorted(p.name for p in (tmp_path / str(keep)).glob("checkpoint-*")) == kept
    assert PPOSettings().keep_checkpoints == 3
    with pytest.raises(ValueError, match="keep_checkpoints must be None or an int >= 0"):
        PPOSettings(keep_checkpoints=-1)


# --------------------------------------------------------------------------------------------- bad inputs


def test_bad_train_and_step_inputs_name_the_parameter():
    run, reward_fn = trainer(max_new_tokens=2)
    with pytest.raises(ValueError, match=r"train\(prompts=...\): expected a list of prompt strings, got str"):
        run.train("What is justice?", reward_fn, steps=1)
    for steps in (2.5, True, -1, "2"):
        with pytest.raises(ValueError, match=r"train\(steps=...\): expected an int >= 0"):
            run.train(PROMPTS, reward_fn, steps=steps)
    with pytest.raises(ValueError, match=r"step\(queries=...\): the batch is empty"):
        run.step([], [], [])
    with pytest.raises(ValueError, match=r"step\(queries=...\): expected a list"):
        run.step("ab", "cd", [1.0, 2.0])
    with pytest.raises(ValueError, match=r"step 1: reward_fn gave NoneType None; expected a list of 4 floats"):
        run.train(PROMPTS, lambda prompts, completions: None, steps=1)
    with pytest.raises(ValueError, match=r"step 1: reward_fn has 3 rewards for 4 responses"):
        run.train(PROMPTS, lambda prompts, completions: [0.0] * 3, steps=1)
    with pytest.raises(ValueError, match=r"step 1: non-finite reward inf"):
        run.train(PROMPTS, lambda prompts, completions: [float("inf")] * 4, steps=1)

    def broken(prompts, completions):
        return {}["score"]

    with pytest.raises(RewardFunctionError, match=r"step 1: reward_fn 'broken' raised KeyError") as caught:
        run.train(PROMPTS, broken, steps=1)
    assert isinstance(caught.value.__cause__, KeyError)
    assert run.step_count == 0


# --------------------------------------------------------------------------------------------- self-play


def selfplay(output_dir, seed: int = 0, **overrides):
    from peft import LoraConfig, get_peft_model

    from rlxf.selfplay import SelfPlaySettings, SelfPlayTrainer

    model, tokenizer = load_causal_lm("tiny-llama", device="cpu")
    torch.manual_seed(0)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(model, lora, adapter_name="dem")
    model.add_adapter("rep", lora)
    ppo = PPOSettings(batch_size=2, ppo_epochs=1, max_new_tokens=3, learning_rate=1e-2, progress_bar=False)
    values = dict(rounds=2, debates_per_round=2, max_exchanges=1, rating_max_new_tokens=2, progress_bar=False,
                  output_dir=str(output_dir), seed=seed)
    return SelfPlayTrainer(model, tokenizer, ppo, SelfPlaySettings(**{**values, **overrides}), names=("dem", "rep"))


def test_selfplay_auto_resume_continues_a_stopped_run_and_moves_another_aside(tmp_path):
    first = selfplay(tmp_path).train(rounds=2)
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert (tmp_path / "checkpoint-2" / "dem" / "optimizer.pt").is_file()  # one self-contained checkpoint
    again = selfplay(tmp_path)
    continued = again.train(rounds=3, resume="auto")  # a re-run notebook continues the stopped run
    assert [row["round"] for row in continued] == [1, 2, 3]
    assert without_times(continued[:2]) == without_times(first)
    transcripts = (tmp_path / "transcripts.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in transcripts] == [1] * 4 + [2] * 4 + [3] * 4  # 2 debates of 2 turns
    with pytest.warns(UserWarning, match=r"another self-play run \(settings.seed: 0 \(checkpoint\) vs 1"):
        other = selfplay(tmp_path, seed=1).train(rounds=1, resume="auto")
    assert [row["round"] for row in other] == [1]
    (old,) = tmp_path.parent.glob(f"{tmp_path.name}.old-*")
    assert len((old / "transcripts.jsonl").read_text().splitlines()) == 12  # nothing of the earlier run is lost
    assert (old / "snapshots" / "round-0003").is_dir()
    with pytest.raises(RunMismatch, match=r"bots.dem.settings.seed|settings.seed: 1 \(checkpoint\) vs 0"):
        selfplay(tmp_path).train(rounds=2, resume=True)


def test_selfplay_corrupt_bot_file_falls_back_and_bad_inputs(tmp_path):
    trainer_ = selfplay(tmp_path)
    history = trainer_.train(rounds=2)
    flip_a_bit(tmp_path / "checkpoint-2" / "rep" / "adapters" / "rep" / "adapter_model.safetensors")
    resumed = selfplay(tmp_path)
    with pytest.warns(UserWarning, match=r"checkpoint-2/rep/adapters/rep/adapter_model\.safetensors: its sha256"):
        assert without_times(resumed.train(rounds=2, resume=True)) == without_times(history)
    for rounds in (2.5, True):
        with pytest.raises(ValueError, match=r"train\(rounds=...\): expected an int >= 0"):
            resumed.train(rounds=rounds)
    with pytest.raises(ValueError, match=r"train\(resume=...\): expected False, True, 'auto' or a checkpoint path"):
        resumed.train(rounds=2, resume=1)


if __name__ == "__main__":
    child(*sys.argv[1:3])


# -------------------------------------------------------------------------------- a hostile or broken judge endpoint

# Faults of a hostile or broken judge endpoint, against stub HTTP servers on 127.0.0.1 only (never the internet).
#
# (a) a redirect (301/302/303/307/308) to another port that records Authorization headers: the key never arrives
#     and the reply is an error value, not a verdict; (b) a server that echoes the key at any offset, also past
#     byte 200: nothing of it in replies, details, errors or log lines; (c) a server that drips its answer one byte
#     at a time: the call ends at the deadline; (d) a key with a plain http:// URL to a non-loopback host: refused.
# Every stub is a bounded `ThreadingHTTPServer` that stops itself when the test ends.

SECRET = "sk-fault-0123456789abcdefghijklmnopqrstuv"  # 40 characters
KEY_ENV = "RLXF_JUDGE_API_KEY"
VERDICT = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Fine.\nVerdict: Yes, excellent."}}]}
DRIP_INTERVAL_S = 0.12
DRIP_MAX_BYTES = 100  # a dripping handler gives up after 12 s even if nobody hangs up


class Stub(BaseHTTPRequestHandler):
    """Behaviour by `server.mode`; every request's path and Authorization header land in `server.seen`."""

    def do_POST(self):  # noqa: N802 (http.server's naming)
        server = self.server
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(length, 1 << 20))
        server.seen.append({"path": self.path, "authorization": self.headers.get("Authorization")})
        mode = server.mode
        if mode == "verdict":
            self._send(200, json.dumps(VERDICT).encode())
        elif mode.startswith("redirect_"):
            self._send(int(mode.split("_")[1]), b"moved", location=server.location)
        elif mode in ("echo_500", "echo_garbage", "echo_content"):
            echo = (b"x" * server.offset + self.headers.get("Authorization", "").encode() + b" trailing text")
            if mode == "echo_content":
                content = echo.decode() + "\nVerdict: Yes."
                self._send(200, json.dumps({"choices": [{"message": {"content": content}}]}).encode())
            else:
                self._send(500 if mode == "echo_500" else 200, echo)
        elif mode == "drip_body":
            self._headers(200, 10_000)
            self._drip(b'{"choices": [' + b" " * DRIP_MAX_BYTES)
        elif mode == "drip_headers":
            self._drip(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * DRIP_MAX_BYTES)

    def _headers(self, status: int, length: int, location: str | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(length))
        if location:
            self.send_header("Location", location)
        self.end_headers()

    def _send(self, status: int, data: bytes, location: str | None = None) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._headers(status, len(data), location)
            self.wfile.write(data)

    def _drip(self, data: bytes) -> None:
        for byte in data[: DRIP_MAX_BYTES]:
            if self.server.stopping.is_set():
                return
            try:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client hung up: what we want
            time.sleep(DRIP_INTERVAL_S)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def stub_server(mode: str, **attributes):
    """A stub judge on 127.0.0.1 (a free port) in `mode`; shut down and closed on exit."""
    with local_server(Stub, **{"mode": mode, "seen": [], "offset": 0, "location": None, **attributes}) as httpd:
        yield httpd


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def leaked(text) -> bool:
    """True when `text` holds the key or any 8 characters in a row of it."""
    text = str(text)
    return any(SECRET[i: i + 8] in text for i in range(len(SECRET) - 7))


# ------------------------------------------------------------------------------------------------ (a) redirects


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_the_key_never_reaches_the_other_host(key, status, caplog):
    with stub_server("verdict") as elsewhere:
        with stub_server(f"redirect_{status}", location=elsewhere.url + "/v1/chat/completions") as judge_server:
            judge = HTTPJudge(judge_server.url, "judge-model", timeout_s=5.0, retries=2, backoff_s=0.01)
            with caplog.at_level(logging.WARNING, logger="rlxf.rewards.judge"):
                reply = judge.generate(["Is this good?"])[0]
            evaluator = Evaluator(judge, lambda verdicts: [1.0] * len(verdicts), ["Is it good?"])
            assert evaluator(["Q"], ["A reply."]) == [0.0]  # the fallback score, not the other host's "Yes"
        assert judge_server.seen[0]["authorization"] == f"Bearer {key}"  # the endpoint itself got the key
        assert len(judge_server.seen) == 2  # not retried: once by generate, once by the evaluator
    assert elsewhere.seen == []  # the other host got nothing at all, so no Authorization header either
    assert reply.text is None and reply.error == "redirect"
    assert str(status) in reply.detail and elsewhere.url in reply.detail
    assert evaluator.stats["fallbacks"] == {"redirect": 1} and evaluator.stats["verdicts"] == 0
    assert "redirect" in caplog.text


# ------------------------------------------------------------------------------------------------ (b) key echoed


@pytest.mark.parametrize("offset", [0, 150, 177, 199, 200, 201, 290, 1000, 5000])
@pytest.mark.parametrize("mode", ["echo_500", "echo_garbage", "echo_content"])
def test_an_echoed_key_is_redacted_at_any_offset(key, mode, offset, caplog):
    with stub_server(mode, offset=offset) as server:
        judge = HTTPJudge(server.url, "judge-model", timeout_s=5.0, retries=0)
        with caplog.at_level(logging.DEBUG):
            reply = judge.generate(["Is this good?"])[0]
            evaluator = Evaluator(judge, lambda verdicts: [0.5] * len(verdicts), ["Is it good?"],
                                  settings=EvaluatorSettings(on_error="raise"))
            if mode == "echo_content":
                evaluator(["Q"], ["A reply."])
                raised = ""
            else:
                with pytest.raises(JudgeError) as error:
                    evaluator(["Q"], ["A reply."])
                raised = f"{error.value} {error.value!r} {error.value.args}"
    assert server.seen[0]["authorization"] == f"Bearer {key}"
    if mode == "echo_content":
        assert reply.error is None and "***" in reply.text
    else:
        assert reply.error == ("http_500" if mode == "echo_500" else "bad_response") and reply.text is None
    outputs = [reply.text, reply.detail, raised, caplog.text, evaluator.last_details, evaluator.stats,
               repr(judge), repr(reply)]
    assert not any(leaked(text) for text in outputs)


# ------------------------------------------------------------------------------------------------ (c) drip-feed


@pytest.mark.parametrize("mode", ["drip_body", "drip_headers"])
def test_a_dripping_server_is_cut_off_at_the_deadline(key, mode):
    deadline_s, slack_s = 1.0, 0.75
    with stub_server(mode) as server:
        judge = HTTPJudge(server.url, "judge-model", timeout_s=deadline_s, retries=0)
        started = time.monotonic()
        reply = judge.generate(["Is this good?"])[0]
        elapsed = time.monotonic() - started
        assert reply.text is None and reply.error == "timeout"
        assert elapsed < deadline_s + slack_s, f"the call took {elapsed:.2f} s with a {deadline_s} s deadline"
        # With retries the bound is (retries + 1) deadlines plus the back-off.
        retrying = HTTPJudge(server.url, "judge-model", timeout_s=0.5, retries=1, backoff_s=0.05)
        started = time.monotonic()
        assert retrying.generate(["Is this good?"])[0].error == "timeout"
        assert time.monotonic() - started < 2 * 0.5 + 0.05 + slack_s


# ------------------------------------------------------------------------------------------------ (d) plain http


def test_a_key_is_never_sent_over_plain_http_to_another_host(key, monkeypatch, caplog):
    with pytest.raises(ValueError, match=rf"plain http://.*https://.*{KEY_ENV}"):
        HTTPJudge("http://judge.invalid:8000", "judge-model")
    # A key that turns up only after construction: an error value before any connection is tried.
    monkeypatch.delenv(KEY_ENV)
    judge = HTTPJudge("http://judge.invalid:8000", "judge-model", timeout_s=1.0, retries=3, backoff_s=5.0)
    monkeypatch.setenv(KEY_ENV, SECRET)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="rlxf.rewards.judge"):
        reply = judge.generate(["Is this good?"])[0]
    assert time.monotonic() - started < 1.0  # refused, not retried
    assert reply.text is None and reply.error == "insecure_url" and "https://" in reply.detail
    assert not leaked(reply.detail) and not leaked(caplog.text)
