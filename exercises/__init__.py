"""Fill-in exercises: the PPO and preference losses of rlxf, written by you (see README.md)."""
