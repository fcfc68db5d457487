"""thinkrl.tokenizer."""
