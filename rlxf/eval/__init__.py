"""Measuring policies the same way whichever algorithm trained them (`policy.policy_report`: replies, reward, KL,
fluency); the statistics on the measurements are in `rlxf.analysis.stats`."""
