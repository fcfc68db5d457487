"""thinkrl.serve."""
