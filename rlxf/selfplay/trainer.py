"""Two-bot PPO: `SelfPlayTrainer` trains both bots of `SelfPlayEnv` at once (one PPO trainer per adapter on one
shared base model), with transcripts, per-round metrics, adapter snapshots for ΔW trends and resumable checkpoints.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import rlxf.progress as progress
from rlxf.algos.ppo import PPOSettings, PPOTrainer
from rlxf.infra.checkpoint import (
    RunStore,
    append_jsonl,
    atomic_dir,
    clean_orphans,
    read_json,
    restore_rng,
    truncate_jsonl,
)
from rlxf.infra.checks import check_count, check_optional_count
from rlxf.infra.identity import not_identity, settings_identity
from rlxf.lm.adapters import save_adapters
from rlxf.lm.generation import chat_prompt
from rlxf.selfplay.control import REWARD_MODES, control_ratings
from rlxf.selfplay.convergence import neutral_streak
from rlxf.selfplay.env import Bot, Reply, SelfPlayEnv, play_episode
from rlxf.selfplay.generated_rater import GeneratedRater
from rlxf.selfplay.rating_parse import FALLBACK, PARSED
from rlxf.selfplay.score_raters import ScoreRater


@dataclass
class SelfPlaySettings:
    """Settings of two-bot self-play training (the PPO settings of each bot are a `rlxf.algos.ppo.PPOSettings`)."""

    rounds: int = not_identity(8)
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
    snapshot_every: int = not_identity(1)
    """save both adapters every this many rounds (and before the first and after the last) for ΔW trends; 0: off"""
    checkpoint_every: int = not_identity(1)
    """write a checkpoint of the whole two-bot state every this many rounds (and at the end); 0: only at the end"""
    keep_checkpoints: int | None = not_identity(3)
    """keep the newest this many checkpoints (older ones are removed after each save); 0 or None: keep all"""
    output_dir: str | None = not_identity(None)
    """transcripts.jsonl, history.jsonl, snapshots/, checkpoint-<round>/ and each bot's PPO metrics; None: none.
    A new run moves an earlier run found there aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>` (nothing is deleted)"""
    seed: int = 0
    """debate d (counted over the whole run) is seeded seed + d: its issue and leading prompts"""
    reward_mode: str = "rating"
    """PPO's reward: "rating" (the other's rating; training), or a control that keeps the ratings out of the reward:
    "shuffled" (each bot's ratings of a round deranged over its replies) or "constant" (reward 0); see
    rlxf.selfplay.control. Ratings are computed and logged the same way in all three"""
    progress_bar: bool = not_identity(True)
    """show a tqdm bar over rounds"""
    report_to: str = not_identity("none")
    """send every round's history row (with both bots' PPO metrics as `<bot>/<metric>`) to "tensorboard"
    (`output_dir/tensorboard`), "trackio" or "wandb" (rlxf.infra.tracking); the bots' own PPO runs report to none"""

    def __post_init__(self) -> None:
        for name in ("rounds", "snapshot_every", "checkpoint_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"SelfPlaySettings.{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("debates_per_round", "max_exchanges", "rating_max_new_tokens"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SelfPlaySettings.{name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.stop_streak is not None and (not isinstance(self.stop_streak, int) or self.stop_streak < 1):
            raise ValueError(f"SelfPlaySettings.stop_streak must be None or an int >= 1, got {self.stop_streak!r}")
        check_optional_count(self.keep_checkpoints, "SelfPlaySettings.keep_checkpoints")
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(f"SelfPlaySettings.reward_mode must be one of {REWARD_MODES}, got {self.reward_mode!r}")
        if self.reward_mode == "shuffled" and self.debates_per_round * self.max_exchanges < 2:
            raise ValueError("SelfPlaySettings.reward_mode='shuffled' needs at least 2 replies per bot and round "
                             "(debates_per_round * max_exchanges >= 2) to shuffle ratings between")
        if not self.neutral_low <= self.neutral_high:
            raise ValueError(f"SelfPlaySettings.neutral_low ({self.neutral_low}) must not exceed neutral_high "
                             f"({self.neutral_high})")


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


class SelfPlayTrainer:
    """Two party bots on ONE base model learn by PPO from each other's agreement ratings.

    `model`: a PeftModel holding both bots' adapters (e.g. the party SFT adapters of notebook 02), `names` the
    two adapter names. Each bot gets its own `rlxf.algos.ppo.PPOTrainer` (own frozen reference copy "<name>_ref", value
    head and optimizer) on the shared backbone. A round plays `debates_per_round` debates in `SelfPlayEnv` (both
    bots answer by sampling from their current policy; each rates the other's reply under its own adapter), then
    every bot does one PPO step on its turns of the round: (prompt, reply tokens, normalised rating by the other).

    Per-round metrics are in `history`, one plain dict per round: `round`, `debates`, `turns`, `parse_rate` and
    `fallbacks` (of this round's ratings), `neutral_frac`, `longest_neutral_streak` (over all ratings so far),
    `time/round_s`, and per bot `<bot>/rating_received` (mean rating of its replies by the other),
    `<bot>/rating_given`, `<bot>/turns` and its PPO step's metrics under their full PPO names (see `rlxf.algos.ppo`):
    `<bot>/env/reward_mean`, `/env/response_length_mean`, `/objective/kl`, `/objective/kl_k3`, `/objective/kl_coef`,
    `/objective/entropy`, `/policy/clipfrac`, `/loss/policy`, `/loss/value`. With `output_dir`,
    transcripts (one turn per line, with `round` and `episode`), history, adapter snapshots and checkpoints of the
    whole two-bot state (`checkpoint-<round>/` with both bots' PPO state in `<bot>/`, checked by sha256) are written
    there, and `train(resume=True)` continues exactly where a checkpoint left off. The run's fingerprint (the
    self-play settings that change results, and per bot its PPO fingerprint: settings, model, adapter) is stored in
    every checkpoint; see `train` for resuming and for a used output_dir.
    `rater`: who turns replies into ratings (default: `GeneratedRater.from_model` on the shared model, each bot rating
    under
    its own adapter; or a `rlxf.selfplay.score_raters.ScoreRater`). Which kind of rater (and a ScoreRater's
    calibration) is
    part of the run's fingerprint.
    """

    def __init__(self, model, tokenizer, ppo_settings, settings: SelfPlaySettings | None = None, *,
                 names: Sequence[str] = ("democrat", "republican"), rater: GeneratedRater | ScoreRater | None = None):
        self.settings = settings = settings if settings is not None else SelfPlaySettings()
        names = list(names)
        if len(names) != 2 or names[0] == names[1] or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"names must be two different adapter names, got {names!r}")
        peft_config = getattr(model, "peft_config", None)
        missing = [n for n in names if not isinstance(peft_config, dict) or n not in peft_config]
        if missing:
            known = sorted(peft_config) if isinstance(peft_config, dict) else "none (not a PeftModel)"
            raise ValueError(f"the model lacks the adapter(s) {missing}; adapters on it: {known}. Load both bots' "
                             "adapters onto one base first (rlxf.lm.adapters.load_adapter)")
        if not isinstance(ppo_settings, PPOSettings):
            raise ValueError(f"ppo_settings must be a rlxf.algos.ppo.PPOSettings, got {type(ppo_settings).__name__}")
        self.names, self.tokenizer = names, tokenizer
        self.output_dir = Path(settings.output_dir) if settings.output_dir is not None else None
        self.trainers = {}
        for name in names:
            # The bots' PPO state goes into the self-play checkpoints; the bots' own directories hold their metrics.
            bot_settings = dataclasses.replace(
                ppo_settings, checkpoint_every=0, keep_checkpoints=None, progress_bar=False, report_to="none",
                output_dir=str(self.output_dir / name) if self.output_dir is not None else None)
            self.trainers[name] = PPOTrainer(model, tokenizer, bot_settings, adapter_name=name)
        self.model = self.trainers[names[0]].model
        if rater is not None and not isinstance(rater, (GeneratedRater, ScoreRater)):
            raise ValueError("rater must be a GeneratedRater (rlxf.selfplay.generated_rater), a ScoreRater "
                             f"(LikelihoodRatioRater, ClassifierRater) or None, got {type(rater).__name__}")
        self.rater = rater if rater is not None else GeneratedRater.from_model(
            self.model, tokenizer, max_new_tokens=settings.rating_max_new_tokens,
            dtype=self.trainers[names[0]].precision)
        self.bots = [Bot(name, self._reply_fn(name), adapter=name) for name in names]
        self.env = SelfPlayEnv(self.bots, self.rater, max_exchanges=settings.max_exchanges,
                               leading_prompts=settings.leading_prompts, neutral_low=settings.neutral_low,
                               neutral_high=settings.neutral_high)
        self.round, self.episodes, self.transcript_lines = 0, 0, 0
        self.history: list[dict] = []
        self.ratings: list[float] = []  # every rating in order, for the neutral-streak stop
        self.stopped_at: int | None = None
        self.store = RunStore(self.output_dir, state_file="selfplay_state.json", kind="self-play", unit="round",
                              owner="SelfPlaySettings", metrics_file="history.jsonl",
                              keep_checkpoints=settings.keep_checkpoints, run_files=("transcripts.jsonl", "snapshots"),
                              report_to=settings.report_to,
                              assumed={"rater": {"kind": "generated"}})  # checkpoints from before raters were recorded
        self.fingerprint = self.store.fingerprint = {
            "kind": "self-play", "settings": settings_identity(settings),
            "bots": {name: {k: v for k, v in self.trainers[name].fingerprint.items() if k != "kind"} for name in names}}
        # Which kind of rater gives the rewards: "auto" resuming must not continue a run rated by another kind.
        self.fingerprint["rater"] = (self.rater.identity() if isinstance(self.rater, ScoreRater)
                                     else {"kind": "generated"})

    def _reply_fn(self, name: str) -> Callable[[str], Reply]:
        trainer = self.trainers[name]

        def reply_fn(prompt: str) -> Reply:
            queries, responses, texts = trainer.generate([chat_prompt(self.tokenizer, prompt)])
            return Reply(texts[0].strip(), queries[0], responses[0])

        return reply_fn

    # --- one round --------------------------------------------------------------------------------------------

    def play_round(self) -> tuple[list[list[dict]], dict[str, list]]:
        """Play one round's debates -> (transcripts, per bot a list of (query ids, response ids, reward))."""
        settings, played = self.settings, []
        transcripts = []
        for _ in range(settings.debates_per_round):
            opener = self.names[self.episodes % 2]
            transcript, replies = play_episode(self.env, self.bots[self.names.index(opener)].reply_fn,
                                               seed=settings.seed + self.episodes, options={"agent": opener})
            for row, reply in zip(transcript, replies, strict=True):
                if reply.query is None or reply.response is None:
                    raise RuntimeError(f"episode {self.episodes}: a reply of {row['speaker']!r} has no token ids")
                played.append((row, reply))
            transcripts.append([{**row, "round": self.round + 1, "episode": self.episodes} for row in transcript])
            self.episodes += 1
        # A control run (reward_mode != "rating") is rated as the trained one; only the reward PPO sees differs.
        rewarded = control_ratings([row["rating_by_other"] for row, _ in played], [row["speaker"] for row, _ in played],
                                   settings.reward_mode, seed=[settings.seed, self.round])
        turns = {name: [] for name in self.names}
        for (row, reply), rating in zip(played, rewarded, strict=True):
            turns[row["speaker"]].append((reply.query, reply.response, GeneratedRater.normalise(rating)))
        return transcripts, turns

    def train_round(self) -> dict:
        """Play a round, give each bot one PPO step on its turns, log -> its metrics (`train` snapshots and saves)."""
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
                   "neutral_frac": _mean([self.settings.neutral_low <= r["rating_by_other"]
                                          <= self.settings.neutral_high for r in rows])}
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
                    metrics[f"{name}/{key}"] = step[key]
        streak = neutral_streak(self.ratings, self.settings.neutral_low, self.settings.neutral_high,
                                self.settings.stop_streak or 1)
        metrics["longest_neutral_streak"] = streak["longest"]
        metrics["time/round_s"] = time.perf_counter() - start
        self.round += 1
        if self.settings.stop_streak is not None and streak["first_complete"] is not None:
            self.stopped_at = self.round
        self.history.append(metrics)
        self._write_round(transcripts, metrics)
        return metrics

    # --- the loop ---------------------------------------------------------------------------------------------

    def train(self, rounds: int | None = None, *, resume: bool | str | Path = False) -> list[dict]:
        """Train until `rounds` rounds are done (default: settings.rounds) or the neutral streak stops it -> history.

        `resume`: False starts a new run; True continues from the latest valid checkpoint in output_dir (a corrupt
        one is skipped with a warning naming the file); a path continues from that checkpoint; "auto" continues
        from the latest valid checkpoint if it has this run's fingerprint, else starts a new run (how notebook 05
        re-runs: a stopped run continues, a changed setting starts afresh). A new run never mixes with an earlier
        run's files: that run's whole directory is moved aside to `<output_dir>.old-<YYYYmmdd-HHMMSS>` with a
        warning; nothing is deleted. Resuming (True or a path) from a checkpoint of another run (other settings,
        seeds, model or adapters) raises `rlxf.infra.checkpoint.RunMismatch` saying what differs.
        """
        rounds = self.settings.rounds if rounds is None else check_count(rounds, "train(rounds=...)")
        with self.store.session():
            self.store.begin(resume, self.round, self.load_checkpoint)
            if self.output_dir is not None:
                clean_orphans(self.output_dir / "snapshots")
            if self.round == 0:
                self._snapshot()
            loop = progress.steps(rounds, initial=self.round, desc="self-play", show=self.settings.progress_bar)
            for _ in loop:
                if self.stopped_at is not None:
                    break
                metrics = self.train_round()
                loop.show(**{name[:3]: f"{metrics[f'{name}/rating_received']:.0f}" for name in self.names})
                if self.settings.snapshot_every and self.round % self.settings.snapshot_every == 0:
                    self._snapshot()
                every = self.settings.checkpoint_every
                if self.output_dir is not None and every and self.round % every == 0:
                    self.save_checkpoint()
            if self.output_dir is not None and self.round > 0:
                if not self.store.saved_at(self.round):
                    self.save_checkpoint()  # the end of train() is always a checkpoint
                self._snapshot()  # the final adapters, whatever snapshot_every is
        return self.history

    # --- files --------------------------------------------------------------------------------------------------

    def _write_round(self, transcripts: list[list[dict]], metrics: dict) -> None:
        if self.output_dir is None:
            return
        rows = (row for transcript in transcripts for row in transcript)
        self.transcript_lines += append_jsonl(self.output_dir / "transcripts.jsonl", rows, ensure_ascii=False)
        self.store.log(metrics, self.round)

    def _snapshot(self) -> Path | None:
        """Both adapters as they are after `self.round` rounds, in PEFT's format (for ΔW over training)."""
        if self.output_dir is None or not self.settings.snapshot_every:
            return None
        path = snapshot_dir(self.output_dir, self.round)
        if path.exists():
            return path
        with atomic_dir(path) as tmp:
            save_adapters(self.model, self.names, tmp)
        return path

    def save_checkpoint(self) -> Path:
        """The whole two-bot state as one checkpoint, atomically: each bot's PPO state in `<bot>/`, then the round,
        counters, history, RNG state and the checksums of all of it."""
        if self.output_dir is None:
            raise ValueError("save_checkpoint(): SelfPlaySettings.output_dir is None")

        def write_extras(tmp: Path) -> None:
            for name, trainer in self.trainers.items():
                (tmp / name).mkdir()
                trainer.write_checkpoint_files(tmp / name)
                (tmp / name / trainer.store.state_file).write_text(json.dumps(trainer.checkpoint_state(), indent=1))

        path = self.store.save(self.round, {
            "round": self.round, "episodes": self.episodes, "transcript_lines": self.transcript_lines,
            "names": self.names, "stopped_at": self.stopped_at, "ratings": self.ratings,
            "rater_counts": {k: v for k, v in self.rater.stats.items() if k not in ("total", "parse_rate")},
            "config": dataclasses.asdict(self.settings), "history": self.history}, write_extras)
        for trainer in self.trainers.values():
            trainer.store.last_checkpoint = path
        return path

    def load_checkpoint(self, path: str | Path | None = None) -> Path:
        """Restore what `save_checkpoint` wrote (default: the latest valid checkpoint in output_dir), after checking
        the checksums (a corrupt file is named) and the run's fingerprint (`RunMismatch`)."""
        if self.output_dir is None:
            raise ValueError("load_checkpoint(): SelfPlaySettings.output_dir is None")
        path, state = self.store.load(path)
        if state["names"] != self.names:
            raise ValueError(f"{path} holds the bots {state['names']}, this trainer has {self.names}")
        for name, trainer in self.trainers.items():
            # Checkpoints of rlxf before checksums kept each bot's PPO checkpoint in the bot's own directory.
            bot_dir = self.output_dir / state["bot_checkpoints"][name] if "bot_checkpoints" in state else path / name
            trainer.restore_checkpoint(bot_dir, read_json(bot_dir / trainer.store.state_file))
            trainer.store.loaded(bot_dir, trainer.history)
        self.round, self.episodes = state["round"], state["episodes"]
        self.transcript_lines, self.history = state["transcript_lines"], state["history"]
        self.ratings, self.stopped_at = state["ratings"], state["stopped_at"]
        self.rater.restore_stats(state["rater_counts"])
        restore_rng(path)
        # Drop what rounds after the checkpoint wrote.
        truncate_jsonl(self.output_dir / "transcripts.jsonl", self.transcript_lines, path,
                       source=path.parent / "transcripts.jsonl")  # path's own run's (output_dir's, or another's)
        self.store.loaded(path, self.history)
        return path

    @property
    def last_checkpoint(self) -> Path | None:
        """The checkpoint last written or loaded."""
        return self.store.last_checkpoint


SEED_STRIDE = 10_000
"""how far apart the seeds of independent self-play runs are (`run_seeds`)"""


def run_seeds(seed: int, n: int, debates_per_run: int) -> list[int]:
    """The seeds of `n` independent self-play runs: seed, seed + SEED_STRIDE, seed + 2 * SEED_STRIDE, ...

    A run seeds its debate d with its seed + d (its issue and leading prompts), so runs seeded one apart would replay
    each other's debates shifted by one; seeds SEED_STRIDE apart keep the debate seeds of runs of up to SEED_STRIDE
    debates (`rounds * debates_per_round`) apart.
    """
    n, debates_per_run = check_count(n, "run_seeds(n=...)"), check_count(debates_per_run, "debates_per_run")
    if n < 1:
        raise ValueError(f"run_seeds: n must be >= 1 (the number of self-play runs), got {n}")
    if debates_per_run > SEED_STRIDE:
        raise ValueError(f"run_seeds: a run of {debates_per_run} debates would reuse the debate seeds of the next run "
                         f"(seeds are {SEED_STRIDE} apart); lower rounds * debates_per_round")
    return [seed + k * SEED_STRIDE for k in range(n)]


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


