"""thinkrl.rl."""
