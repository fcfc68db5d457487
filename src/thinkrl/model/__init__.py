"""thinkrl.model."""
