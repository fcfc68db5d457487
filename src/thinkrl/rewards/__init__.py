"""thinkrl.rewards."""
