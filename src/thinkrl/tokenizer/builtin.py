"""The built-in tokenizer: a 512-token BPE for the tiny models trained from scratch here.

It is committed in ``builtin/`` (``tokenizer.json``, ``tokenizer_config.json``
with the ``seed_oss`` chat template, ``special_tokens_map.json``) and loads with
`thinkrl.tokenizer.load_tokenizer("builtin")` or with
``transformers.AutoTokenizer.from_pretrained``. Regenerate it (bit-identical)
with::

    python -m thinkrl.tokenizer.builtin --out src/thinkrl/tokenizer/builtin

Design:
    * ids 0, 1, 2 are ``<seed:bos>``, ``<seed:pad>``, ``<seed:eos>`` as in
      Seed-OSS, followed by the thinking, reflection and tool-call tags, the
      ``<think>`` tags and ``<unk>``; all are special and never split.
    * the alphabet is Python's ``string.printable`` (printable ASCII plus
      whitespace), so any ASCII text round-trips exactly; other characters
      become ``<unk>``.
    * pre-tokenization isolates every digit (numbers are spelled digit by
      digit, as arithmetic needs) and splits words GPT-2 style (a word keeps
      its leading space); the decoder just concatenates tokens, so decoding is
      exact and ``decode(a + b) == decode(a) + decode(b)``.
    * the merges are learned deterministically by `tokenizers.trainers.BpeTrainer`
      on `build_corpus`: the chat-template and budget sentences, reasoning
      phrases and generated arithmetic / number-puzzle text, so the words of
      prompts and traces are single tokens.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

from thinkrl.tokenizer.budget import (
    BUDGET_EXHAUSTED_TEXT,
    BUDGET_ZERO_TEXT,
    budget_system_prompt,
    reflection_text,
)
from thinkrl.tokenizer.chat_template import read_template
from thinkrl.tokenizer.text_tokenizer import BUILTIN_DIR

VOCAB_SIZE = 512
BOS_TOKEN, PAD_TOKEN, EOS_TOKEN, UNK_TOKEN = "<seed:bos>", "<seed:pad>", "<seed:eos>", "<unk>"
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS_TOKEN,
    PAD_TOKEN,
    EOS_TOKEN,
    "<seed:think>",
    "</seed:think>",
    "<seed:cot_budget_reflect>",
    "</seed:cot_budget_reflect>",
    "<seed:tool_call>",
    "</seed:tool_call>",
    "<think>",
    "</think>",
    UNK_TOKEN,
)
"""Special tokens in id order (``<seed:bos>`` is 0)."""

ALPHABET: tuple[str, ...] = tuple(string.printable)
# One digit; a word with its leading space; a run of other symbols with its leading space;
# whitespace not followed by text; any other whitespace.
PRE_TOKENIZER_PATTERN = r"[0-9]| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+"

_ROLES = ("system", "user", "assistant", "tool")
_PHRASES = (
    "You are a helpful assistant.",
    "You are a helpful AI assistant. You may call one or more functions to assist with the user query.",
    "Think step by step, then give the final answer.",
    "Let me think about this step by step.",
    "Let me try another way.",
    "Wait, let me check that again.",
    "That does not work, so I will try something else.",
    "That works! So the answer is correct.",
    "I need to find a way to reach the target.",
    "The remaining numbers are not enough.",
    "Each number must be used exactly once.",
    "First, I will add the numbers. Then I will check the result.",
    "Next, I try to multiply and divide.",
    "This is not possible, because the result is too small.",
    "This is too large, so I should subtract.",
    "Now I have the final answer.",
    "Sort the list of numbers in increasing order.",
    "Find the path through the maze from the start to the end.",
    "Move up, down, left or right, one step at a time.",
    "Fill the grid so that each row and each column has every number once.",
    "Count the number of ways to do it.",
    "The sum is equal to the target, and the product is greater than the difference.",
    "Call tools in this format:",
    "Function:",
    "Args:",
    "Returns:",
    "[required]",
    "[optional]",
)


_REASONING = (
    "Wait, that is wrong. Let me recheck the last step.",
    "Maybe I should start with the largest number.",
    "The smallest number is {a} and the largest is {b}.",
    "Since {a} is even, {a} / 2 = {half} is a whole number.",
    "Is {b} a prime number? It is odd, so it is not divisible by 2.",
    "The difference of {a} and {b} is {diff}, and the sum is {sum}.",
    "So {a} plus {b} gives {sum}, and {a} times {b} gives {prod}.",
    "We still have {b} left. Adding it gives {sum}, which is close to the target.",
    "That is larger than the target, so the result should be smaller.",
    "Another combination: multiply first, then subtract.",
    "Hmm, this combination also fails. Let me look at the pairs again.",
    "Therefore the expression equals the target. The solution is found.",
    "Let me verify: the value is correct, because every number is used once.",
    "I know the remainder of {sum} divided by {a} is {rem}.",
    "This gives the same value as before, so it does not help.",
    "The second number is {b}, the third number is {a}.",
    "The equation is true, so this is the answer.",
    "Let me write the final expression and check it one more time.",
)


def _reasoning_lines(rng: random.Random) -> list[str]:
    a, b = rng.randint(2, 50), rng.randint(2, 50)
    values = {"a": a, "b": b, "half": a // 2, "diff": abs(a - b), "sum": a + b, "prod": a * b, "rem": (a + b) % a}
    return [sentence.format(**values) for sentence in rng.sample(_REASONING, 4)]


def _countdown_lines(rng: random.Random) -> list[str]:
    numbers = [rng.randint(1, 13) for _ in range(4)]
    a, b, c, d = numbers
    target = rng.choice([24, rng.randint(10, 100)])
    s, p = a + b, (a + b) * c
    return [
        f"Use the numbers {a}, {b}, {c} and {d} to make {target}. You can use +, -, * and /, "
        'and each number can only be used once. Give the answer after "Answer:".',
        f"The target is {target}. The numbers are {a}, {b}, {c}, {d}.",
        f"Let me try {a} + {b} = {s}. Then {s} * {c} = {p}.",
        f"{p} is not {target}, so I will try again." if p != target else f"{p} is the target!",
        f"Try ({a} - {b}) * {c} + {d} = {(a - b) * c + d}. That is not it either.",
        f"Now use {d}: {p} - {d} = {p - d}, and {p} + {d} = {p + d}.",
        f"What if I divide? {a * b} / {b} = {a}.",
        f"So the answer is ({a} + {b}) * {c} - {d} = {p - d}.",
        f"Answer: ({a} + {b}) * {c} - {d}\n\n",
    ]


def _arithmetic_lines(rng: random.Random) -> list[str]:
    x, y = rng.randint(10, 999), rng.randint(2, 99)
    ones = x % 10 + y % 10
    return [
        f"What is {x} + {y}?",
        f"Compute {x} * {y}.",
        f"Calculate {x} - {y} and {x} / {y}.",
        f"First add the ones: {x % 10} + {y % 10} = {ones}. Write {ones % 10} and carry {ones // 10}.",
        f"Then the tens. The result is {x + y}.",
        f"Check: {x + y} - {y} = {x}, which is right.",
        f"{x} * {y} = {x * y}, so the answer is {x * y}.",
        f"The answer is {x + y}.",
    ]


def _compact_lines(rng: random.Random) -> list[str]:
    """Prompts and steps written without spaces, as the built-in tasks write them."""
    a, b, c, d = (rng.randint(1, 25) for _ in range(4))
    target = rng.randint(10, 100)
    once = rng.choice(["at most once", "exactly once"])
    return [
        f"Use {a} {b} {c} {d} to make {target} with + - * /. Each number {once}. Answer with the expression.",
        f"Compute {a}*({b}+({c}+{d})).",
        f"{c}+{d}={c + d}: {a}*({b}+{c + d})",
        f"{a}*{b}={a * b}, {a * b}-{c}={a * b - c}, not {target}",
        f"({a}+{b})*{c}-{d}",
    ]


def _template_lines(rng: random.Random) -> list[str]:
    lines = [f"{role}\n" for role in _ROLES]
    for budget in (0, 512, 1024, 2048, 4096, 8192):
        lines.append(budget_system_prompt(budget) or "")
    lines += [BUDGET_ZERO_TEXT, BUDGET_EXHAUSTED_TEXT]
    for _ in range(8):
        budget = rng.choice([512, 1024, 2048])
        used = rng.randint(1, budget)
        lines.append(reflection_text(used, budget - used))
    lines.append("<function=calculator>\n<parameter=expression>(3 + 5) * 3</parameter>\n</function>")
    lines.append('{"name": "calculator", "arguments": {"expression": "3 * 8"}}')
    return lines


def build_corpus(seed: int = 0, num_problems: int = 200) -> list[str]:
    """The deterministic training text of the built-in BPE (plain ASCII, no special tokens).

    Args:
        seed: seed of the generator of numbers.
        num_problems: how many arithmetic and number-puzzle snippets to generate.
    """
    rng = random.Random(seed)
    lines = list(_PHRASES)
    for _ in range(num_problems):
        lines += _template_lines(rng) if rng.random() < 0.25 else []
        lines += _countdown_lines(rng) + _arithmetic_lines(rng) + _reasoning_lines(rng) + _compact_lines(rng)
    bad = sorted({ch for line in lines for ch in line if ch not in ALPHABET})
    assert not bad, f"corpus has characters outside the alphabet: {bad}"
    return lines


def train_builtin_tokenizer(corpus: list[str] | None = None) -> Tokenizer:
    """Train the built-in BPE on ``corpus`` (default `build_corpus()`); deterministic."""
    tokenizer = Tokenizer(models.BPE(unk_token=UNK_TOKEN))
    tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex(PRE_TOKENIZER_PATTERN), behavior="isolated")
    tokenizer.decoder = decoders.Fuse()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS],
        initial_alphabet=list(ALPHABET),
    )
    tokenizer.train_from_iterator(corpus if corpus is not None else build_corpus(), trainer=trainer)
    return tokenizer


def tokenizer_config(chat_template: str) -> dict[str, object]:
    """The ``tokenizer_config.json`` of the built-in tokenizer, carrying ``chat_template``."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "pad_token": PAD_TOKEN,
        "unk_token": UNK_TOKEN,
        "additional_special_tokens": [t for t in SPECIAL_TOKENS if t not in (BOS_TOKEN, PAD_TOKEN, EOS_TOKEN)],
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1048576,
        "padding_side": "left",
        "chat_template": chat_template,
    }


def write_builtin(out_dir: str | Path) -> Path:
    """Train the built-in tokenizer and write its three files into ``out_dir``; returns the folder."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_builtin_tokenizer()
    tokenizer.save(str(out / "tokenizer.json"), pretty=True)
    chat_template, _ = read_template("seed_oss")
    config = tokenizer_config(chat_template)
    special_map = {key: config[key] for key in ("bos_token", "eos_token", "pad_token", "unk_token")}
    special_map["additional_special_tokens"] = config["additional_special_tokens"]
    for name, data in (("tokenizer_config.json", config), ("special_tokens_map.json", special_map)):
        (out / name).write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m thinkrl.tokenizer.builtin --out DIR``: regenerate the built-in tokenizer files."""
    parser = argparse.ArgumentParser(description="Regenerate the built-in thinkrl tokenizer.")
    parser.add_argument("--out", default=str(BUILTIN_DIR), help="output folder (default: the package's)")
    args = parser.parse_args(argv)
    out = write_builtin(args.out)
    vocab_size = Tokenizer.from_file(str(out / "tokenizer.json")).get_vocab_size()
    print(f"wrote the built-in tokenizer ({vocab_size} tokens) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
