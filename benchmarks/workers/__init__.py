"""Workers of benchmarks/ppo_vs_trl.py: one run of one library each, in a fresh process (rlxf.infra.memory)."""
