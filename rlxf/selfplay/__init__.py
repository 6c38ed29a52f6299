"""Two-bot self-play: the environment, agreement ratings, the two-bot PPO trainer, and convergence measures.

  env          Bot, Reply, SelfPlayEnv (Gymnasium), run_episode / play_episode, TwoBotDebate, transcripts I/O
  rating       parse_rating, rating_from_logprobs, Rater (agreement ratings 1-100)
  trainer      SelfPlaySettings, SelfPlayTrainer, snapshots, history
  probe        memory_probe (one round, for rlxf.memory.peak_memory)
  convergence  neutral streaks, ΔW distances between adapters, text diversity
"""

from rlxf.selfplay.env import (
    LEADING_PROMPTS,
    POLITICAL_ISSUES,
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
from rlxf.selfplay.probe import memory_probe
from rlxf.selfplay.rating import FALLBACK, PARSED, Rater, Rating, parse_rating
from rlxf.selfplay.trainer import (
    SelfPlaySettings,
    SelfPlayTrainer,
    list_snapshots,
    read_history,
    snapshot_dir,
)

__all__ = [
    "FALLBACK", "LEADING_PROMPTS", "PARSED", "POLITICAL_ISSUES", "TRANSCRIPT_KEYS", "AnyText", "Bot", "Rater",
    "Rating", "Reply", "SelfPlayEnv", "SelfPlaySettings", "SelfPlayTrainer", "TwoBotDebate", "list_snapshots",
    "memory_probe", "parse_rating", "play_episode", "read_history", "read_transcripts", "run_episode",
    "snapshot_dir", "turn_prompt", "write_transcripts",
]
