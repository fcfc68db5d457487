"""thinkrl.serve: OpenAI-compatible HTTP server (`app.create_app`, `thinkrl serve`) and client-side
thinking-budget control for any OpenAI-compatible server (`budget_client.generate_with_budget`).
Imports engine and tokenizer. See docs/serving.md."""
