"""thinkrl.tokenizer: tokenizers, chat templates (Seed-OSS and ``<think>`` formats) and output parsing.

No torch here. `load_tokenizer` reads any Hugging Face tokenizer folder (or the
built-in 512-token BPE) into a `TextTokenizer` backed by the fast `tokenizers`
library; `budget` names the thinking-budget sentences and tags the engine
forces; `parse_completion` splits generated text into reasoning, answer, tool
calls and budget reflections. See docs/tokenizer.md.
"""

from thinkrl.tokenizer.budget import (
    BUDGET_EXHAUSTED_TEXT,
    BUDGET_ZERO_TEXT,
    SEED_TAGS,
    THINK_TAGS,
    UNLIMITED_BUDGET,
    ThinkTags,
    budget_system_prompt,
    check_thinking_budget,
    reflection_interval,
    reflection_text,
    tags_for_format,
)
from thinkrl.tokenizer.chat_template import TEMPLATE_NAMES, compile_chat_template, read_template
from thinkrl.tokenizer.parse import ParsedCompletion, ToolCall, parse_completion, parse_tool_call
from thinkrl.tokenizer.text_tokenizer import BUILTIN_DIR, TextTokenizer, ThinkFormat, load_tokenizer

__all__ = [
    "BUDGET_EXHAUSTED_TEXT",
    "BUDGET_ZERO_TEXT",
    "BUILTIN_DIR",
    "SEED_TAGS",
    "TEMPLATE_NAMES",
    "THINK_TAGS",
    "UNLIMITED_BUDGET",
    "ParsedCompletion",
    "TextTokenizer",
    "ThinkFormat",
    "ThinkTags",
    "ToolCall",
    "budget_system_prompt",
    "check_thinking_budget",
    "compile_chat_template",
    "load_tokenizer",
    "parse_completion",
    "parse_tool_call",
    "read_template",
    "reflection_interval",
    "reflection_text",
    "tags_for_format",
]
