"""thinkrl.engine."""
