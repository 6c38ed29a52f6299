"""Two-bot self-play as a Gymnasium environment: two party bots talk, and each one's agreement is the other's reward.

One episode: the acting bot (the "agent", the one a PPO loop trains) answers a starter prompt on a political
issue; that reply is the `action` passed to `step`. The environment then asks the OTHER bot to rate the reply
(1-100, through a shared `GeneratedRater`): that rating is the agent's reward. The other bot replies (the environment
calls it), the agent rates that reply (kept in `info` and the transcript, so the other bot can be trained on its
turns too), and the other bot's reply is the agent's next observation. After `max_exchanges` exchanges the
episode is truncated; with `stop_streak=n` it terminates once `n` ratings in a row are neutral (if that happens on
the agent's rating, the other bot does not reply and the observation stays the prompt just answered).

Optionally a "leading prompt" ("Do you have a compromise?", ...) is appended to every reply before the next bot
answers it; switch it with `leading_prompts` to compare conversations with and without the nudge.

A PPO loop for the agent (`rlxf.algos.ppo.PPOTrainer` on the agent's adapter):
    observation, info = env.reset(seed=seed)
    while True:
        queries, responses, texts = trainer.generate([chat_prompt(tokenizer, observation)])
        observation, reward, terminated, truncated, info = env.step(texts[0])
        trainer.step(queries, responses, [reward])   # or collect a batch of turns first
        if terminated or truncated: break
`info["opponent_turn"]` (prompt, reply, rating_by_other) holds the other bot's turn for training it as well.

A bot's `reply_fn` may return a plain str or a `Reply` that also carries the token ids it was sampled as (query
and response); the environment keeps the text in the transcript and hands the `Reply`s of the episode, one per
transcript row, to the caller as `info["replies"]` (how `rlxf.selfplay.trainer` gets PPO's token ids).
"""

from __future__ import annotations

import itertools
import json
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch
from gymnasium.spaces import Text

from rlxf.data.prompts import LEADING_PROMPTS, POLITICAL_QUESTIONS
from rlxf.infra.checkpoint import read_jsonl
from rlxf.lm.adapters import using_adapter
from rlxf.lm.generation import generate
from rlxf.selfplay.convergence import neutral_streak
from rlxf.selfplay.generated_rater import GeneratedRater
from rlxf.selfplay.score_raters import ScoreRater

TRANSCRIPT_KEYS = ("exchange", "speaker", "prompt", "reply", "rating_by_other", "parse_path")


@dataclass(frozen=True)
class Reply:
    """A bot's reply as text and, when it was sampled token by token, its query and response token ids."""

    text: str
    query: torch.Tensor | None = None
    response: torch.Tensor | None = None


@dataclass(frozen=True)
class Bot:
    """A named speaker: `reply_fn(prompt) -> reply` (a str or a `Reply`), and the LoRA adapter under which it
    rates (None: the base model with adapters disabled, or the model itself if it has no adapters)."""

    name: str
    reply_fn: Callable[[str], str | Reply]
    adapter: str | None = None

    @classmethod
    def from_adapter(cls, name: str, model, tokenizer, adapter: str | None = None, **generate_kwargs) -> Bot:
        """A bot that answers with `model` under LoRA adapter `adapter` (`rlxf.lm.generation.generate` settings).

        Its k-th reply (k = 0, 1, ...) samples with seed `seed` + k: one fixed seed would draw the same random numbers
        for every reply, and a bot that echoes its prompt would then write the same text all debate long. Two bots
        built alike draw the same seeds turn by turn (common random numbers for comparing two settings)."""
        calls = itertools.count()
        first_seed = int(generate_kwargs.pop("seed", 0))

        def reply_fn(prompt: str) -> str:
            with using_adapter(model, adapter):
                return generate(model, tokenizer, [prompt], seed=first_seed + next(calls), **generate_kwargs)[0]

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

    `bots`: the two `Bot`s (distinct names). `rater`: the shared `GeneratedRater` (or a `ScoreRater`); a bot rates
    under its
    own adapter.
    Observation: the text the agent answers next (the starter, then the other's reply plus any leading prompt);
    the whole conversation is in `info["transcript"]`. Reward: `GeneratedRater.normalise(rating)` in [-1, 1]
    (`normalise_reward=False`: the raw rating 1-100). `reset(options={"agent": name, "issue": text})` picks who
    acts (default: the first bot) and the starter (default: drawn from `issues` with the seeded `np_random`).
    """

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, bots: Sequence[Bot], rater: GeneratedRater | ScoreRater, *, max_exchanges: int = 4,
                 issues: Sequence[str] = POLITICAL_QUESTIONS, leading_prompts: bool = False,
                 leading_prompt_texts: Sequence[str] = LEADING_PROMPTS, stop_streak: int | None = None,
                 neutral_low: float = 45.0, neutral_high: float = 55.0, normalise_reward: bool = True,
                 max_text_chars: int = 8192, render_mode: str | None = None):
        bots = list(bots)
        if len(bots) != 2 or not all(isinstance(b, Bot) for b in bots) or bots[0].name == bots[1].name:
            raise ValueError(f"bots must be two Bot objects with different names, got {bots!r}")
        if not isinstance(rater, (GeneratedRater, ScoreRater)):
            raise ValueError("rater must be a GeneratedRater (rlxf.selfplay.generated_rater) or a ScoreRater "
                             f"(LikelihoodRatioRater, ClassifierRater), got {type(rater).__name__}")
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
        self._replies: list[Reply] = []
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
        self._transcript, self._replies, self._ratings, self._exchange, self._done = [], [], [], 0, False
        return self._prompt, self._info(rating=None, opponent_turn=None)

    def step(self, action: str | Reply) -> tuple[str, float, bool, bool, dict]:
        if self._done:
            raise RuntimeError("step() called on a finished or not yet started episode: call reset() first")
        reply_of_agent = action if isinstance(action, Reply) else Reply(action)
        action = reply_of_agent.text
        if not self.action_space.contains(action):
            got = f"a str of length {len(action)}" if isinstance(action, str) else type(action).__name__
            raise ValueError(f"action must be the agent's reply as a str of at most {self.action_space.max_length} "
                             f"characters, got {got}")
        agent, other = self.bots[self.agent], self._other()
        turn = self._turn(agent, self._prompt, self._leading, reply_of_agent, rater=other)
        reward = GeneratedRater.normalise(turn["rating_by_other"]) if self.normalise_reward else turn["rating_by_other"]
        terminated = self._streak_done()
        opponent_turn = None
        if not terminated:
            prompt, leading = self._next_prompt(action)
            reply = other.reply_fn(prompt)
            reply = Reply(reply) if isinstance(reply, str) else reply
            if not isinstance(reply, Reply) or not isinstance(reply.text, str):
                raise ValueError(f"bot {other.name!r}: reply_fn returned {type(reply).__name__}, expected str")
            opponent_turn = self._turn(other, prompt, leading, reply, rater=agent)
            terminated = self._streak_done()
            self._prompt, self._leading = self._next_prompt(reply.text)
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

    def _turn(self, speaker: Bot, prompt: str, leading: str | None, reply: Reply, *, rater: Bot) -> dict:
        """Have `rater` rate `speaker`'s reply; record the turn."""
        rating = self.rater.rate(reply.text, adapter=rater.adapter)
        row = {"exchange": self._exchange, "speaker": speaker.name, "prompt": prompt, "reply": reply.text,
               "rating_by_other": rating.value, "parse_path": rating.path, "rater": rater.name,
               "rater_reply": rating.reply, "leading_prompt": leading, "issue": self._issue}
        self._transcript.append(row)
        self._replies.append(reply)
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
                "transcript": self.transcript, "replies": list(self._replies)}


# ------------------------------------------------------------------------------------------------ episodes


def play_episode(env: SelfPlayEnv, policy: Callable[[str], str | Reply], *, seed: int | None = None,
                 options: dict | None = None) -> tuple[list[dict], list[Reply]]:
    """Play one episode, the agent answering with `policy(observation) -> reply` -> (transcript, one `Reply` per
    transcript row: the text and, where the bot sampled it as tokens, its token ids)."""
    observation, info = env.reset(seed=seed, options=options)
    done = False
    while not done:
        observation, _, terminated, truncated, info = env.step(policy(observation))
        done = terminated or truncated
    return info["transcript"], info["replies"]


def run_episode(env: SelfPlayEnv, policy: Callable[[str], str | Reply], *, seed: int | None = None,
                options: dict | None = None) -> list[dict]:
    """Play one episode, the agent answering with `policy(observation) -> reply` -> the transcript."""
    return play_episode(env, policy, seed=seed, options=options)[0]


class TwoBotDebate:
    """Whole conversations between two bots with given generate functions (no training) -> transcripts."""

    def __init__(self, bots: Sequence[Bot], rater: GeneratedRater | ScoreRater, **env_kwargs):
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


def _check_transcript_row(row: dict, where: str) -> None:
    missing = [key for key in (*TRANSCRIPT_KEYS, "episode") if key not in row]
    if missing:
        raise ValueError(f"{where}: a transcript line needs the keys {missing}")
    if not isinstance(row["episode"], int):
        raise ValueError(f"{where}: 'episode' must be an int, got {row['episode']!r}")


def read_transcripts(path: str | Path) -> list[list[dict]]:
    """Read `write_transcripts` output back -> one list of turns per episode, in episode order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no transcript file at {path}")
    episodes: dict[int, list[dict]] = {}
    for row in read_jsonl(path, _check_transcript_row):
        episodes.setdefault(row.pop("episode"), []).append(row)
    return [episodes[key] for key in sorted(episodes)]
