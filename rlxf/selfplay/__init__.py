"""Two-bot self-play: the environment, agreement ratings, the two-bot PPO trainer, and convergence measures.

  env              Bot, Reply, SelfPlayEnv (Gymnasium), run_episode / play_episode, TwoBotDebate, transcripts I/O
  rating_parse     parse_rating, Rating: the number a rater's reply gives as its rating
  generated_rater  GeneratedRater: the rating bot writes a rating (1-100), logprob fallback (rating_from_logprobs)
  score_raters     ScoreRater, LikelihoodRatioRater, ClassifierRater (ratings computed from a score; same interface)
  trainer          SelfPlaySettings, SelfPlayTrainer, snapshots, history, run_seeds (independent runs)
  control          reward_mode of a control run: "shuffled" (ratings deranged) or "constant" (reward 0), not "rating"
  seeds            train_seed_runs: further runs from the SFT adapters (reloaded and hash-checked), one per seed
  probe            memory_probe (one round, for rlxf.infra.memory.peak_memory), probe_arguments (typed settings)
  convergence      neutral streaks, ΔW distances between adapters, text diversity, run_convergence (per run)
"""

from rlxf.selfplay.env import (
    TRANSCRIPT_KEYS,
    AnyText,
    Bot,
    Reply,
    SelfPlayEnv,
    TwoBotDebate,
    play_episode,
    read_transcripts,
    run_episode,
    turn_prompt,
    write_transcripts,
)
from rlxf.selfplay.generated_rater import GeneratedRater
from rlxf.selfplay.probe import memory_probe, probe_arguments
from rlxf.selfplay.rating_parse import FALLBACK, PARSED, Rating, parse_rating
from rlxf.selfplay.score_raters import ClassifierRater, LikelihoodRatioRater, ScoreRater
from rlxf.selfplay.seeds import adapter_hashes, restore_adapters, seed_run_dir, train_seed_runs
from rlxf.selfplay.trainer import (
    SelfPlaySettings,
    SelfPlayTrainer,
    list_snapshots,
    read_history,
    run_seeds,
    snapshot_dir,
)

__all__ = [
    "FALLBACK", "PARSED", "TRANSCRIPT_KEYS", "AnyText", "Bot",
    "ClassifierRater", "LikelihoodRatioRater", "GeneratedRater", "Rating", "Reply", "ScoreRater", "SelfPlayEnv",
    "SelfPlaySettings", "SelfPlayTrainer", "TwoBotDebate", "adapter_hashes", "list_snapshots", "memory_probe",
    "parse_rating", "play_episode", "probe_arguments", "read_history", "read_transcripts", "restore_adapters",
    "run_episode", "run_seeds", "seed_run_dir", "snapshot_dir", "train_seed_runs", "turn_prompt", "write_transcripts",
]
