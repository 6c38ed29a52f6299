"""Two-bot self-play as a Gymnasium environment: two party bots talk, and each one's agreement is the other's reward.

One episode: the acting bot (the "agent", the one a PPO loop trains) answers a starter prompt on a political
issue; that reply is the `action` passed to `step`. The environment then asks the OTHER bot to rate the reply
(1-100, through a shared `Rater`): that rating is the agent's reward. The other bot replies (the environment
calls it), the agent rates that reply (kept in `info` and the transcript, so the other bot can be trained on its
turns too), and the other bot's reply is the agent's next observation. After `max_exchanges` exchanges the
episode is truncated; with `stop_streak=n` it terminates once `n` ratings in a row are neutral (if that happens on
the agent's rating, the other bot does not reply and the observation stays the prompt just answered).

Optionally a "leading prompt" ("Do you have a compromise?", ...) is appended to every reply before the next bot
answers it; switch it with `leading_prompts` to compare conversations with and without the nudge.

A PPO loop for the agent (`rlxf.ppo.PPOTrainer` on the agent's adapter):
    observation, info = env.reset(seed=seed)
    while True:
        queries, responses, texts = trainer.generate([chat_prompt(tokenizer, observation)])
        observation, reward, terminated, truncated, info = env.step(texts[0])
        trainer.step(queries, responses, [reward])   # or collect a batch of turns first
        if terminated or truncated: break
`info["opponent_turn"]` (prompt, reply, rating_by_other) holds the other bot's turn for training it as well.

`SelfPlayTrainer` trains both bots that way at once (one PPO trainer per adapter on one shared base model), with
transcripts, per-round metrics, adapter snapshots for ΔW trends and resumable checkpoints; `memory_probe` is one
round of it (or of a single bot of the same shape) for `rlxf.memory.peak_memory`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch
from gymnasium.spaces import Text
from tqdm.auto import tqdm

from rlxf.checkpoint import (
    atomic_dir,
    capture_rng_state,
    checkpoint_dir,
    latest_checkpoint,
    restore_rng_state,
    save_adapter,
)
from rlxf.convergence import neutral_streak
from rlxf.generation import POLITICAL_QUESTIONS, chat_prompt, generate
from rlxf.rating import FALLBACK, PARSED, Rater, using_adapter

POLITICAL_ISSUES: tuple[str, ...] = POLITICAL_QUESTIONS  # the debates' starters
LEADING_PROMPTS: tuple[str, ...] = (
    "Do you have a compromise?",
    "What would you do instead?",
    "Is there a solution you both would accept?",
)
TRANSCRIPT_KEYS = ("exchange", "speaker", "prompt", "reply", "rating_by_other", "parse_path")


@dataclass(frozen=True)
class Bot:
    """A named speaker: `reply_fn(prompt) -> reply`, and the LoRA adapter under which it rates (None: as is)."""

    name: str
    reply_fn: Callable[[str], str]
    adapter: str | None = None

    @classmethod
    def from_adapter(cls, name: str, model, tokenizer, adapter: str | None = None, **generate_kwargs) -> Bot:
        """A bot that answers with `model` under LoRA adapter `adapter` (`rlxf.generation.generate` settings)."""

        def reply_fn(prompt: str) -> str:
            with using_adapter(model, adapter):
                return generate(model, tokenizer, [prompt], **generate_kwargs)[0]

        return cls(name, reply_fn, adapter)


class AnyText(Text):
    """A Text space that holds any string of bounded length (model replies are arbitrary Unicode).

    gymnasium's Text only holds strings over its charset; `sample()` still draws from printable ASCII.
    """

    def __init__(self, max_length: int):
        super().__init__(max_length=max_length, min_length=0, charset=string.printable)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


def turn_prompt(reply: str, leading: str | None) -> str:
    """What the next bot answers: the other's reply, then the leading question (if any) after a blank line."""
    return f"{reply}\n\n{leading}" if leading else reply


class SelfPlayEnv(gymnasium.Env):
    """Two bots in conversation; the agent's action is its reply, its reward the other bot's rating of it.

    `bots`: the two `Bot`s (distinct names). `rater`: the shared `Rater`; a bot rates under its own adapter.
    Observation: the text the agent answers next (the starter, then the other's reply plus any leading prompt);
    the whole conversation is in `info["transcript"]`. Reward: `Rater.normalise(rating)` in [-1, 1]
    (`normalise_reward=False`: the raw rating 1-100). `reset(options={"agent": name, "issue": text})` picks who
    acts (default: the first bot) and the starter (default: drawn from `issues` with the seeded `np_random`).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, bots: Sequence[Bot], rater: Rater, *, max_exchanges: int = 4,
                 issues: Sequence[str] = POLITICAL_ISSUES, leading_prompts: bool = False,
                 leading_prompt_texts: Sequence[str] = LEADING_PROMPTS, stop_streak: int | None = None,
                 neutral_low: float = 45.0, neutral_high: float = 55.0, normalise_reward: bool = True,
                 max_text_chars: int = 8192, render_mode: str | None = None):
        bots = list(bots)
        if len(bots) != 2 or not all(isinstance(b, Bot) for b in bots) or bots[0].name == bots[1].name:
            raise ValueError(f"bots must be two Bot objects with different names, got {bots!r}")
        if not isinstance(rater, Rater):
            raise ValueError(f"rater must be a rlxf.rating.Rater, got {type(rater).__name__}")
        if max_exchanges < 1:
            raise ValueError(f"max_exchanges must be >= 1, got {max_exchanges}")
        if stop_streak is not None and stop_streak < 1:
            raise ValueError(f"stop_streak must be None or >= 1, got {stop_streak}")
        if not neutral_low <= neutral_high:
            raise ValueError(f"neutral_low ({neutral_low}) must not exceed neutral_high ({neutral_high})")
        if not issues or not all(isinstance(i, str) and i for i in issues):
            raise ValueError("issues must be a non-empty list of non-empty strings")
        if leading_prompts and not (leading_prompt_texts and all(isinstance(p, str) and p
                                                                 for p in leading_prompt_texts)):
            raise ValueError("leading_prompts=True needs a non-empty list of non-empty leading_prompt_texts")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.bots = {bot.name: bot for bot in bots}
        self.rater, self.max_exchanges, self.stop_streak = rater, max_exchanges, stop_streak
        self.issues, self.leading_prompts = tuple(issues), leading_prompts
        self.leading_prompt_texts = tuple(leading_prompt_texts)
        self.neutral_low, self.neutral_high, self.normalise_reward = neutral_low, neutral_high, normalise_reward
        self.render_mode = render_mode
        self.observation_space = AnyText(max_text_chars)
        self.action_space = AnyText(max_text_chars)
        self.agent: str = bots[0].name
        self._transcript: list[dict] = []
        self._ratings: list[float] = []
        self._issue, self._prompt, self._leading = "", "", None
        self._exchange, self._done = 0, True

    # --- gymnasium API ----------------------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"agent", "issue"}
        if unknown:
            raise ValueError(f"reset(): unknown options {sorted(unknown)}; expected 'agent' and/or 'issue'")
        agent = options.get("agent", next(iter(self.bots)))
        if agent not in self.bots:
            raise ValueError(f"reset(): options['agent'] must be one of {list(self.bots)}, got {agent!r}")
        issue = options.get("issue")
        if issue is None:
            issue = self.issues[int(self.np_random.integers(len(self.issues)))]
        if not isinstance(issue, str) or not issue:
            raise ValueError(f"reset(): options['issue'] must be a non-empty str, got {issue!r}")
        self.agent, self._issue, self._prompt, self._leading = agent, issue, issue, None
        self._transcript, self._ratings, self._exchange, self._done = [], [], 0, False
        return self._prompt, self._info(rating=None, opponent_turn=None)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("step() called on a finished or not yet started episode: call reset() first")
        if not self.action_space.contains(action):
            got = f"a str of length {len(action)}" if isinstance(action, str) else type(action).__name__
            raise ValueError(f"action must be the agent's reply as a str of at most {self.action_space.max_length} "
                             f"characters, got {got}")
        agent, other = self.bots[self.agent], self._other()
        turn = self._turn(agent, self._prompt, self._leading, action, rater=other)
        reward = Rater.normalise(turn["rating_by_other"]) if self.normalise_reward else turn["rating_by_other"]
        terminated = self._streak_done()
        opponent_turn = None
        if not terminated:
            prompt, leading = self._next_prompt(action)
            reply = other.reply_fn(prompt)
            if not isinstance(reply, str):
                raise ValueError(f"bot {other.name!r}: reply_fn returned {type(reply).__name__}, expected str")
            opponent_turn = self._turn(other, prompt, leading, reply, rater=agent)
            terminated = self._streak_done()
            self._prompt, self._leading = self._next_prompt(reply)
        self._exchange += 1
        truncated = not terminated and self._exchange >= self.max_exchanges
        self._done = terminated or truncated
        info = self._info(rating=turn["rating_by_other"], opponent_turn=opponent_turn)
        info["parse_path"] = turn["parse_path"]
        return self._prompt, float(reward), terminated, truncated, info

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        lines = [f"issue: {self._issue}"]
        for row in self._transcript:
            lines.append(f"[{row['exchange']}] {row['speaker']} (rated {row['rating_by_other']:.1f} by the other): "
                         f"{row['reply']}")
        return "\n".join(lines)

    # --- helpers --------------------------------------------------------------------------------------------

    @property
    def transcript(self) -> list[dict]:
        """The episode so far: one dict per turn (a copy)."""
        return [dict(row) for row in self._transcript]

    def _other(self) -> Bot:
        return next(bot for name, bot in self.bots.items() if name != self.agent)

    def _next_prompt(self, reply: str) -> tuple[str, str | None]:
        leading = None
        if self.leading_prompts:
            leading = self.leading_prompt_texts[int(self.np_random.integers(len(self.leading_prompt_texts)))]
        return turn_prompt(reply, leading), leading

    def _turn(self, speaker: Bot, prompt: str, leading: str | None, reply: str, *, rater: Bot) -> dict:
        """Have `rater` rate `speaker`'s reply; record the turn."""
        rating = self.rater.rate(reply, adapter=rater.adapter)
        row = {"exchange": self._exchange, "speaker": speaker.name, "prompt": prompt, "reply": reply,
               "rating_by_other": rating.value, "parse_path": rating.path, "rater": rater.name,
               "rater_reply": rating.reply, "leading_prompt": leading, "issue": self._issue}
        self._transcript.append(row)
        self._ratings.append(rating.value)
        return row

    def _streak_done(self) -> bool:
        if self.stop_streak is None:
            return False
        streak = neutral_streak(self._ratings, self.neutral_low, self.neutral_high, self.stop_streak)
        return streak["first_complete"] is not None

    def _info(self, *, rating: float | None, opponent_turn: dict | None) -> dict:
        return {"agent": self.agent, "other": self._other().name, "exchange": self._exchange, "issue": self._issue,
                "rating": rating, "opponent_turn": opponent_turn, "ratings": list(self._ratings),
                "transcript": self.transcript}


# ------------------------------------------------------------------------------------------------ episodes


def run_episode(env: SelfPlayEnv, policy: Callable[[str], str], *, seed: int | None = None,
                options: dict | None = None) -> list[dict]:
    """Play one episode, the agent answering with `policy(observation) -> reply` -> the transcript."""
    observation, _ = env.reset(seed=seed, options=options)
    done = False
    while not done:
        observation, _, terminated, truncated, _ = env.step(policy(observation))
        done = terminated or truncated
    return env.transcript


class TwoBotDebate:
    """Whole conversations between two bots with given generate functions (no training) -> transcripts."""

    def __init__(self, bots: Sequence[Bot], rater: Rater, **env_kwargs):
        self.env = SelfPlayEnv(bots, rater, **env_kwargs)

    def run_episode(self, *, seed: int | None = None, issue: str | None = None, agent: str | None = None
                    ) -> list[dict]:
        """One conversation; `agent` opens it (default: the first bot), `issue` is its starter (default: drawn)."""
        options = {key: value for key, value in (("issue", issue), ("agent", agent)) if value is not None}
        opener = self.env.bots[agent] if agent is not None else next(iter(self.env.bots.values()))
        return run_episode(self.env, opener.reply_fn, seed=seed, options=options)

    def run(self, n_episodes: int, *, seed: int = 0, alternate_opener: bool = True) -> list[list[dict]]:
        """`n_episodes` conversations seeded seed, seed + 1, ...; the bots take turns opening when alternating."""
        if n_episodes < 0:
            raise ValueError(f"n_episodes must be >= 0, got {n_episodes}")
        names = list(self.env.bots)
        return [self.run_episode(seed=seed + i, agent=names[i % 2] if alternate_opener else names[0])
                for i in range(n_episodes)]


# ------------------------------------------------------------------------------------------------ JSON lines


def write_transcripts(path: str | Path, transcripts: Sequence[Sequence[dict]]) -> Path:
    """Write transcripts as JSON lines, one turn per line with its `episode` index (its position in the list)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for episode, transcript in enumerate(transcripts):
            for index, row in enumerate(transcript):
                missing = [key for key in TRANSCRIPT_KEYS if key not in row]
                if missing:
                    raise ValueError(f"transcripts[{episode}][{index}] lacks the keys {missing}")
                handle.write(json.dumps({**row, "episode": episode}, ensure_ascii=False) + "\n")
    return path


def read_transcripts(path: str | Path) -> list[list[dict]]:
    """Read `write_transcripts` output back -> one list of turns per episode, in episode order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no transcript file at {path}")
    episodes: dict[int, list[dict]] = {}
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
            missing = [key for key in (*TRANSCRIPT_KEYS, "episode") if not isinstance(row, dict) or key not in row]
            if missing:
                raise ValueError(f"{path}:{line_number}: a transcript line needs the keys {missing}")
            if not isinstance(row["episode"], int):
                raise ValueError(f"{path}:{line_number}: 'episode' must be an int, got {row['episode']!r}")
            episodes.setdefault(row.pop("episode"), []).append(row)
    return [episodes[key] for key in sorted(episodes)]


# ------------------------------------------------------------------------------------------------ two-bot PPO


@dataclass
class SelfPlayConfig:
    """Settings of two-bot self-play training (the PPO settings of each bot are a `rlxf.ppo.PPOConfig`)."""

    rounds: int = 8
    """training rounds; each plays `debates_per_round` debates, then gives each bot one PPO step"""
    debates_per_round: int = 2
    """debates per round; the bots take turns opening, so each bot's batch is debates x exchanges turns"""
    max_exchanges: int = 2
    """exchanges (one reply of each bot) per debate"""
    leading_prompts: bool = False
    """append a leading prompt ("Do you have a compromise?", ...) to every reply before the other answers it"""
    stop_streak: int | None = None
    """stop training once this many ratings in a row (over all debates, in order) are neutral; None: never"""
    neutral_low: float = 45.0
    """lower bound of a neutral rating"""
    neutral_high: float = 55.0
    """upper bound of a neutral rating"""
    rating_max_new_tokens: int = 12
    """tokens of the rater's reply before it is parsed (logprob fallback if it holds no number)"""
    snapshot_every: int = 1
    """save both adapters every this many rounds (and before the first and after the last) for ΔW trends; 0: off"""
    checkpoint_every: int = 1
    """write a checkpoint of the whole two-bot state every this many rounds (and at the end); 0: only at the end"""
    output_dir: str | None = None
    """transcripts.jsonl, history.jsonl, snapshots/, checkpoint-<round>/ and each bot's PPO directory; None: none"""
    seed: int = 0
    """debate d (counted over the whole run) is seeded seed + d: its issue and leading prompts"""
    progress_bar: bool = True
    """show a tqdm bar over rounds"""

    def __post_init__(self) -> None:
        for name in ("rounds", "snapshot_every", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"SelfPlayConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("debates_per_round", "max_exchanges", "rating_max_new_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SelfPlayConfig.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.stop_streak is not None and (not isinstance(self.stop_streak, int) or self.stop_streak < 1):
            raise ValueError(f"SelfPlayConfig.stop_streak must be None or an int >= 1, got {self.stop_streak!r}")
        if not self.neutral_low <= self.neutral_high:
            raise ValueError(f"SelfPlayConfig.neutral_low ({self.neutral_low}) must not exceed neutral_high "
                             f"({self.neutral_high})")


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


class SelfPlayTrainer:
    """Two party bots on ONE base model learn by PPO from each other's agreement ratings.

    `model`: a PeftModel holding both bots' adapters (e.g. the party SFT adapters of notebook 02), `names` the
    two adapter names. Each bot gets its own `rlxf.ppo.PPOTrainer` (own frozen reference copy "<name>_ref", value
    head and optimizer) on the shared backbone. A round plays `debates_per_round` debates in `SelfPlayEnv` (both
    bots answer by sampling from their current policy; each rates the other's reply under its own adapter), then
    every bot does one PPO step on its turns of the round: (prompt, reply tokens, normalised rating by the other).

    Per-round metrics are in `history`, one plain dict per round: `round`, `debates`, `turns`, `parse_rate` and
    `fallbacks` (of this round's ratings), `neutral_frac`, `longest_neutral_streak` (over all ratings so far),
    `time/round_s`, and per bot `<bot>/rating_received` (mean rating of its replies by the other),
    `<bot>/rating_given`, `<bot>/turns` and its PPO step's `<bot>/reward_mean`, `/kl`, `/kl_k3`, `/kl_coef`,
    `/entropy`, `/response_length_mean`, `/clipfrac`, `/policy`, `/value` (see `rlxf.ppo`). With `output_dir`,
    transcripts (one turn per line, with `round` and `episode`), history, adapter snapshots and checkpoints of the
    whole two-bot state are written there, and `train(resume=True)` continues exactly where a checkpoint left off.
    `rater`: who turns replies into ratings (default: `Rater.from_model` on the shared model, each bot rating under
    its own adapter).
    """

    def __init__(self, model, tokenizer, ppo_config, config: SelfPlayConfig | None = None, *,
                 names: Sequence[str] = ("democrat", "republican"), rater: Rater | None = None):
        from rlxf.ppo import PPOConfig, PPOTrainer

        self.config = config = config if config is not None else SelfPlayConfig()
        names = list(names)
        if len(names) != 2 or names[0] == names[1] or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"names must be two different adapter names, got {names!r}")
        peft_config = getattr(model, "peft_config", None)
        missing = [n for n in names if not isinstance(peft_config, dict) or n not in peft_config]
        if missing:
            known = sorted(peft_config) if isinstance(peft_config, dict) else "none (not a PeftModel)"
            raise ValueError(f"the model lacks the adapter(s) {missing}; adapters on it: {known}. Load both bots' "
                             "adapters onto one base first (rlxf.sft.load_adapter)")
        if not isinstance(ppo_config, PPOConfig):
            raise ValueError(f"ppo_config must be a rlxf.ppo.PPOConfig, got {type(ppo_config).__name__}")
        self.names, self.tokenizer = names, tokenizer
        self.output_dir = Path(config.output_dir) if config.output_dir is not None else None
        self.trainers = {}
        for name in names:
            bot_config = dataclasses.replace(
                ppo_config, checkpoint_every=0, progress_bar=False,
                output_dir=str(self.output_dir / name) if self.output_dir is not None else None)
            self.trainers[name] = PPOTrainer(model, tokenizer, bot_config, adapter_name=name)
        self.model = self.trainers[names[0]].model
        if rater is not None and not isinstance(rater, Rater):
            raise ValueError(f"rater must be a rlxf.rating.Rater or None, got {type(rater).__name__}")
        self.rater = rater if rater is not None else Rater.from_model(
            self.model, tokenizer, max_new_tokens=config.rating_max_new_tokens)
        self._generated: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in names}
        self.bots = [Bot(name, self._reply_fn(name), adapter=name) for name in names]
        self.env = SelfPlayEnv(self.bots, self.rater, max_exchanges=config.max_exchanges,
                               leading_prompts=config.leading_prompts, neutral_low=config.neutral_low,
                               neutral_high=config.neutral_high)
        self.round, self.episodes, self.transcript_lines = 0, 0, 0
        self.history: list[dict] = []
        self.ratings: list[float] = []  # every rating in order, for the neutral-streak stop
        self.stopped_at: int | None = None
        self.last_checkpoint: Path | None = None

    def _reply_fn(self, name: str) -> Callable[[str], str]:
        trainer = self.trainers[name]

        def reply_fn(prompt: str) -> str:
            queries, responses, texts = trainer.generate([chat_prompt(self.tokenizer, prompt)])
            self._generated[name].append((queries[0], responses[0]))
            return texts[0].strip()

        return reply_fn

    # --- one round --------------------------------------------------------------------------------------------

    def play_round(self) -> tuple[list[list[dict]], dict[str, list]]:
        """Play one round's debates -> (transcripts, per bot a list of (query ids, response ids, reward))."""
        cfg, turns = self.config, {name: [] for name in self.names}
        transcripts = []
        for _ in range(cfg.debates_per_round):
            opener = self.names[self.episodes % 2]
            for name in self.names:
                self._generated[name].clear()
            transcript = run_episode(self.env, self.bots[self.names.index(opener)].reply_fn,
                                     seed=cfg.seed + self.episodes, options={"agent": opener})
            by_speaker = {name: [row for row in transcript if row["speaker"] == name] for name in self.names}
            for name in self.names:
                if len(by_speaker[name]) != len(self._generated[name]):  # each reply_fn call is one turn
                    raise RuntimeError(f"episode {self.episodes}: {len(by_speaker[name])} turns of {name!r} in the "
                                       f"transcript but {len(self._generated[name])} generated replies")
                for row, (query, response) in zip(by_speaker[name], self._generated[name], strict=True):
                    turns[name].append((query, response, Rater.normalise(row["rating_by_other"])))
            transcripts.append([{**row, "round": self.round + 1, "episode": self.episodes} for row in transcript])
            self.episodes += 1
        return transcripts, turns

    def train_round(self) -> dict:
        """Play a round, give each bot one PPO step on its turns, log, snapshot and checkpoint -> its metrics."""
        start = time.perf_counter()
        counts_before = self.rater.stats
        transcripts, turns = self.play_round()
        counts = self.rater.stats
        parsed, fallback = counts[PARSED] - counts_before[PARSED], counts[FALLBACK] - counts_before[FALLBACK]
        rows = [row for transcript in transcripts for row in transcript]
        self.ratings += [row["rating_by_other"] for row in rows]
        metrics = {"round": self.round + 1, "debates": len(transcripts), "turns": len(rows),
                   "parse_rate": parsed / (parsed + fallback) if parsed + fallback else float("nan"),
                   "fallbacks": fallback,
                   "neutral_frac": _mean([self.config.neutral_low <= r["rating_by_other"] <= self.config.neutral_high
                                          for r in rows])}
        for name in self.names:
            own = [row for row in rows if row["speaker"] == name]
            metrics[f"{name}/rating_received"] = _mean([row["rating_by_other"] for row in own])
            metrics[f"{name}/rating_given"] = _mean([row["rating_by_other"] for row in rows if row["rater"] == name])
            metrics[f"{name}/turns"] = len(own)
            if turns[name]:
                queries, responses, rewards = zip(*turns[name], strict=True)
                step = self.trainers[name].step(list(queries), list(responses), list(rewards))
                for key in ("env/reward_mean", "env/response_length_mean", "objective/kl", "objective/kl_k3",
                            "objective/kl_coef", "objective/entropy", "policy/clipfrac", "loss/policy", "loss/value"):
                    metrics[f"{name}/{key.split('/', 1)[1]}"] = step[key]
        streak = neutral_streak(self.ratings, self.config.neutral_low, self.config.neutral_high,
                                self.config.stop_streak or 1)
        metrics["longest_neutral_streak"] = streak["longest"]
        metrics["time/round_s"] = time.perf_counter() - start
        self.round += 1
        if self.config.stop_streak is not None and streak["first_complete"] is not None:
            self.stopped_at = self.round
        self.history.append(metrics)
        self._write_round(transcripts, metrics)
        return metrics

    # --- the loop ---------------------------------------------------------------------------------------------

    def train(self, rounds: int | None = None, *, resume: bool | str | Path = False) -> list[dict]:
        """Train until `rounds` rounds are done (default: config.rounds) or the neutral streak stops it -> history.

        `resume`: True continues from the latest checkpoint in output_dir, a path from that checkpoint.
        """
        rounds = self.config.rounds if rounds is None else rounds
        if not isinstance(rounds, int) or rounds < 0:
            raise ValueError(f"train(): rounds must be an int >= 0, got {rounds!r}")
        if resume:
            self.load_checkpoint(None if resume is True else resume)
        elif self.round == 0 and self.output_dir is not None and self.output_dir.is_dir():
            # A new run in a used directory: an earlier run's files would mix with this one's.
            for stale in ("transcripts.jsonl", "history.jsonl"):
                (self.output_dir / stale).unlink(missing_ok=True)
            for stale in [self.output_dir / "snapshots", *self.output_dir.glob("checkpoint-*")]:
                shutil.rmtree(stale, ignore_errors=True)
        if self.round == 0:
            self._snapshot()
        bar = tqdm(total=rounds, initial=self.round, desc="self-play", disable=not self.config.progress_bar)
        try:
            while self.round < rounds and self.stopped_at is None:
                metrics = self.train_round()
                bar.update(1)
                bar.set_postfix({name[:3]: f"{metrics[f'{name}/rating_received']:.0f}" for name in self.names})
                every = self.config.snapshot_every
                if every and self.round % every == 0:
                    self._snapshot()
                if (self.output_dir is not None and self.config.checkpoint_every
                        and self.round % self.config.checkpoint_every == 0):
                    self.save_checkpoint()
        finally:
            bar.close()
        if self.output_dir is not None and self.round > 0:
            self._snapshot()  # the final adapters, whatever snapshot_every is
            if self.last_checkpoint is None or self.last_checkpoint.name != f"checkpoint-{self.round}":
                self.save_checkpoint()
        return self.history

    # --- files --------------------------------------------------------------------------------------------------

    def _write_round(self, transcripts: list[list[dict]], metrics: dict) -> None:
        if self.output_dir is None:
            return
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with (self.output_dir / "transcripts.jsonl").open("a", encoding="utf-8") as handle:
            for row in (row for transcript in transcripts for row in transcript):
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                self.transcript_lines += 1
        with (self.output_dir / "history.jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(metrics) + "\n")

    def _snapshot(self) -> Path | None:
        """Both adapters as they are after `self.round` rounds, in PEFT's format (for ΔW over training)."""
        if self.output_dir is None or not self.config.snapshot_every:
            return None
        path = snapshot_dir(self.output_dir, self.round)
        if path.exists():
            return path
        with atomic_dir(path) as tmp:
            for name in self.names:
                save_adapter(self.model, name, tmp / name)
        return path

    def save_checkpoint(self) -> Path:
        """Both bots' PPO checkpoints, then (atomically) the round, counters, history and RNG state."""
        if self.output_dir is None:
            raise ValueError("save_checkpoint(): SelfPlayConfig.output_dir is None")
        bot_checkpoints = {name: self.trainers[name].save_checkpoint() for name in self.names}
        path = checkpoint_dir(self.output_dir, self.round)
        with atomic_dir(path) as tmp:
            state = {"round": self.round, "episodes": self.episodes, "transcript_lines": self.transcript_lines,
                     "names": self.names, "stopped_at": self.stopped_at, "ratings": self.ratings,
                     "rater_counts": {PARSED: self.rater.stats[PARSED], FALLBACK: self.rater.stats[FALLBACK]},
                     "bot_checkpoints": {name: str(p.relative_to(self.output_dir))
                                         for name, p in bot_checkpoints.items()},
                     "config": dataclasses.asdict(self.config), "history": self.history}
            (tmp / "selfplay_state.json").write_text(json.dumps(state, indent=1))
            torch.save(capture_rng_state(), tmp / "rng_state.pt")
        self.last_checkpoint = path
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> Path:
        """Restore what `save_checkpoint` wrote (default: the latest checkpoint in output_dir)."""
        if self.output_dir is None:
            raise ValueError("load_checkpoint(): SelfPlayConfig.output_dir is None")
        if path is None:
            path = latest_checkpoint(self.output_dir)
            if path is None:
                raise FileNotFoundError(f"no checkpoint-<round> directory to resume from in {self.output_dir}")
        path = Path(path)
        state_file = path / "selfplay_state.json"
        if not state_file.is_file():
            raise FileNotFoundError(f"not a self-play checkpoint (no selfplay_state.json): {path}")
        state = json.loads(state_file.read_text())
        if state["names"] != self.names:
            raise ValueError(f"{path} holds the bots {state['names']}, this trainer has {self.names}")
        for name in self.names:
            self.trainers[name].load_checkpoint(self.output_dir / state["bot_checkpoints"][name])
        self.round, self.episodes = state["round"], state["episodes"]
        self.transcript_lines, self.history = state["transcript_lines"], state["history"]
        self.ratings, self.stopped_at = state["ratings"], state["stopped_at"]
        self.rater.restore_stats(state["rater_counts"])
        restore_rng_state(torch.load(path / "rng_state.pt"))
        # Drop what rounds after the checkpoint wrote.
        transcripts = self.output_dir / "transcripts.jsonl"
        lines = transcripts.read_text(encoding="utf-8").splitlines(keepends=True) if transcripts.exists() else []
        if len(lines) < self.transcript_lines:
            raise ValueError(f"{transcripts} has {len(lines)} lines but the checkpoint {path} counts "
                             f"{self.transcript_lines}: the transcripts do not belong to this checkpoint")
        transcripts.write_text("".join(lines[: self.transcript_lines]), encoding="utf-8")
        (self.output_dir / "history.jsonl").write_text("".join(json.dumps(m) + "\n" for m in self.history))
        self.last_checkpoint = path
        return path


def snapshot_dir(output_dir: str | Path, round_index: int) -> Path:
    """Where `SelfPlayTrainer` saves both adapters after `round_index` rounds."""
    return Path(output_dir) / "snapshots" / f"round-{round_index:04d}"


def list_snapshots(output_dir: str | Path) -> dict[int, Path]:
    """The adapter snapshots of a self-play run -> {round: directory}, in round order."""
    root = Path(output_dir) / "snapshots"
    found = {}
    for path in sorted(root.glob("round-*")) if root.is_dir() else []:
        suffix = path.name.split("-", 1)[1]
        if path.is_dir() and suffix.isdigit():
            found[int(suffix)] = path
    return found


def read_history(output_dir: str | Path) -> list[dict]:
    """The per-round metrics a self-play run wrote (`history.jsonl`)."""
    path = Path(output_dir) / "history.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no self-play history at {path}")
    rows = []
    for line_number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}:{line_number}: not valid JSON ({error.msg})") from error
    return rows


# ------------------------------------------------------------------------------------------------ memory


def memory_probe(bots: int, policy_model: str, adapter_dirs: Sequence[str], ppo: dict, selfplay: dict,
                 names: Sequence[str] = ("democrat", "republican")) -> dict:
    """One round of PPO work on `policy_model` with 2 bots (self-play) or 1 (a single-bot run of the same shape).

    Meant for `rlxf.memory.peak_memory` (a fresh process each). Both shapes generate the same number of replies
    one at a time, rate each with the same `Rater`, and take PPO steps of the same batch size: two bots play one
    `SelfPlayTrainer` round; one bot answers the debates' issues and is rated by itself.
    """
    from rlxf.models import load_causal_lm
    from rlxf.ppo import PPOConfig, PPOTrainer
    from rlxf.sft import load_adapter

    if bots not in (1, 2):
        raise ValueError(f"bots must be 1 or 2, got {bots!r}")
    if len(adapter_dirs) != 2 or len(names) != 2:
        raise ValueError("memory_probe needs the two bots' adapter_dirs and names (the single-bot run uses the first)")
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    model, tokenizer = load_causal_lm(policy_model)
    for index in range(bots):
        model = load_adapter(model, adapter_dirs[index], names[index])
    ppo_config = PPOConfig(**{**ppo, "output_dir": None, "progress_bar": False})
    config = SelfPlayConfig(**{**selfplay, "rounds": 1, "output_dir": None, "progress_bar": False})
    if bots == 2:
        trainer = SelfPlayTrainer(model, tokenizer, ppo_config, config, names=names)
        metrics = trainer.train_round()
        return {"bots": 2, "turns": metrics["turns"], "steps": sum(t.step_count for t in trainer.trainers.values())}
    trainer = PPOTrainer(model, tokenizer, ppo_config, adapter_name=names[0])
    rater = Rater.from_model(trainer.model, tokenizer, max_new_tokens=config.rating_max_new_tokens)
    turns = config.debates_per_round * config.max_exchanges  # one bot's batch in a self-play round
    queries, responses, rewards = [], [], []
    for index in range(turns):
        query, response, text = trainer.generate([chat_prompt(tokenizer, POLITICAL_ISSUES[index % len(POLITICAL_ISSUES)])])
        queries += query
        responses += response
        rewards.append(Rater.normalise(rater.rate(text[0], adapter=names[0]).value))
    trainer.step(queries, responses, rewards)
    return {"bots": 1, "turns": turns, "steps": trainer.step_count}
