"""thinkrl.rollout."""
