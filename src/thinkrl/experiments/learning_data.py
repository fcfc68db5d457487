"""Data of the learning protocol: train / validation / test splits per data seed, and SFT examples.

Split rule: one pool of distinct problems is generated from ``random.Random(data_seed)`` (distinct by content
hash, which covers the prompt text: the id hashes the sorted numbers and the target), then each problem is put in
a split by a *salted* hash of its id, ``sha256(f"{data_seed}:{id}")``, taking the first ``num_test`` problems of
the lowest buckets for test, the next ``num_val`` for validation and the rest for train. The splits are disjoint by
construction (a problem has one id and lands in one split) and differ across data seeds (both the pool and the
salt change). ``check_disjoint`` verifies it on ids *and* prompt text, so a task whose id ignored some prompt
content would still be caught.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from thinkrl.tasks import Problem, Task, get_task
from thinkrl.tasks.countdown import CountdownTask
from thinkrl.tasks.dataset import generate_dataset, write_jsonl
from thinkrl.tokenizer import TextTokenizer
from thinkrl.train.common import encode_sft_example

Example = tuple[list[int], list[bool]]
"""One SFT example: token ids of prompt + assistant turn, and the loss mask (True on assistant tokens)."""


@dataclass(frozen=True)
class Splits:
    """The three problem sets of one data seed.

    Fields:
        train: problems the arms may train on (prompts for RL and RFT, traces for SFT).
        val: problems every setting is chosen on.
        test: problems each final model is evaluated on once.
        data_seed: the seed that generated and split them.
    """

    train: list[Problem]
    val: list[Problem]
    test: list[Problem]
    data_seed: int

    def write(self, folder: Path) -> dict[str, Path]:
        """``train.jsonl``, ``val.jsonl``, ``test.jsonl`` in ``folder``; returns split name -> path."""
        folder.mkdir(parents=True, exist_ok=True)
        paths = {name: folder / f"{name}.jsonl" for name in ("train", "val", "test")}
        for name, path in paths.items():
            write_jsonl(getattr(self, name), path)
        return paths


def salted_bucket(problem_id: str, data_seed: int) -> int:
    """A 64-bit integer from ``sha256(f"{data_seed}:{problem_id}")``: the order in which problems are dealt."""
    return int.from_bytes(hashlib.sha256(f"{data_seed}:{problem_id}".encode()).digest()[:8], "big")


def make_splits(task: str, difficulty: Mapping[str, Any], data_seed: int, *, num_train: int, num_val: int,
                num_test: int) -> Splits:
    """Disjoint train / val / test problem sets of ``task`` for ``data_seed`` (see the module docstring).

    Raises ValueError (from the generator) when the difficulty has fewer distinct problems than asked for.
    """
    for name, n in (("num_train", num_train), ("num_val", num_val), ("num_test", num_test)):
        if n < 1:
            raise ValueError(f"{name} must be >= 1, got {n}")
    pool = generate_dataset(task, num_train + num_val + num_test, data_seed, "train", difficulty, test_percent=0)
    dealt = sorted(pool, key=lambda p: salted_bucket(p.id, data_seed))
    splits = Splits(train=dealt[num_test + num_val:], val=dealt[num_test:num_test + num_val],
                    test=dealt[:num_test], data_seed=data_seed)
    check_disjoint(splits)
    return splits


def check_disjoint(splits: Splits) -> None:
    """ValueError naming the two splits and the problem if any id or prompt text occurs in two splits."""
    named = {"train": splits.train, "val": splits.val, "test": splits.test}
    seen_ids: dict[str, str] = {}
    seen_prompts: dict[str, str] = {}
    for name, problems in named.items():
        for problem in problems:
            for key, seen in ((problem.id, seen_ids), (problem.prompt, seen_prompts)):
                if key in seen and seen[key] != name:
                    raise ValueError(f"problem {problem.id} ({problem.prompt!r}) is in both {seen[key]} and {name}")
                seen[key] = name


def trace_task(name: str, search_attempts: int = 0) -> Task:
    """The task that writes the traces: ``get_task(name)``, or, with ``search_attempts`` K >= 1, countdown's
    search-trace writer (0..K failed attempts before the solution); ValueError for another task."""
    if not search_attempts:
        return get_task(name)
    if name != "countdown":
        raise ValueError(f"search_attempts ({search_attempts}) is a countdown trace option; task is {name!r}")
    return CountdownTask(search_attempts=search_attempts)


def trace_examples(tokenizer: TextTokenizer, problems: Sequence[Problem], rng: random.Random,
                   search_attempts: int = 0, terse_share: float = 0.0) -> list[Example]:
    """One correct traced example per problem (no planted slips: trace noise 0), drawn with ``rng``;
    ``search_attempts`` as in `trace_task`. With probability ``terse_share`` an example is `terse_example`:
    still correct, but without its working, as a terse written solution is."""
    if not 0.0 <= terse_share <= 1.0:
        raise ValueError(f"terse_share must be in [0, 1], got {terse_share}")
    examples, tasks = [], {}
    for problem in problems:
        if problem.task not in tasks:
            tasks[problem.task] = trace_task(problem.task, search_attempts)
        trace = tasks[problem.task].write_trace(problem, rng, noise=0.0)
        # Drawn only when asked for, so terse_share 0 keeps the recorded protocol's traces draw for draw.
        if terse_share and rng.random() < terse_share:
            examples.append(terse_example(tokenizer, problem, trace.answer))
        else:
            examples.append(encode_sft_example(tokenizer, problem, trace.thinking, trace.answer))
    return examples


def terse_example(tokenizer: TextTokenizer, problem: Problem, answer: str) -> Example:
    """The answer after an *empty* thinking block (``<seed:think></seed:think>`` then the answer), the way hybrid
    models render their non-thinking turns. The block is kept, not dropped, so every response starts with the
    same token and the mode is chosen by the next one: thinking or closing the block."""
    tags = tokenizer.think_tags
    ids, mask = encode_sft_example(tokenizer, problem, "", answer)
    prompt_len = mask.index(True)
    opened = tokenizer.encode(tags.open + tags.close + "\n")  # as the full trace: the answer on its own line
    return ids[:prompt_len] + opened + ids[prompt_len:], mask[:prompt_len] + [True] * len(opened) + mask[prompt_len:]


def response_example(prompt_ids: Sequence[int], response_ids: Sequence[int]) -> Example:
    """An SFT example from a sampled response (RFT): loss on the response tokens only."""
    return list(prompt_ids) + list(response_ids), [False] * len(prompt_ids) + [True] * len(response_ids)
