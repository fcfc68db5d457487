"""thinkrl.train."""
