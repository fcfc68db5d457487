"""thinkrl.eval."""
