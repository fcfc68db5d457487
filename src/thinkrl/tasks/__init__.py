"""thinkrl.tasks."""
