"""rlxf: reinforcement learning from feedback that is not a human click (AI, experience, learned preferences)."""

__version__ = "0.1.0"
