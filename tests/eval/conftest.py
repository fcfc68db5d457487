"""A real `thinkrl serve` (built from its CLI arguments) on a free loopback port, over a tiny model trained here to
answer every benchmark problem with ``\\boxed{3}`` or ``\\boxed{4}`` (about half each), so verdicts are mixed."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from fastapi import FastAPI

from thinkrl.model import ModelConfig, build_model, save_pretrained
from thinkrl.serve.background import serve_in_background
from thinkrl.serve.cli import add_arguments, build_app
from thinkrl.tasks.external import load_math_dataset
from thinkrl.tokenizer import load_tokenizer

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
NUM_PROBLEMS = 12
ANSWERS = ("3", "4", "5")  # the model says 3 or 4: answer-5 problems are never right


@dataclass
class Served:
    url: str  # API root, e.g. http://127.0.0.1:PORT/v1
    app: FastAPI
    model_dir: Path
    model_name: str
    bench: Path  # math JSONL (problem / answer)




def write_bench(path: Path, num_problems: int) -> Path:
    rows = [{"problem": f"What is {i} + {i % 3}? (problem {i})", "answer": ANSWERS[i % 3]} for i in range(num_problems)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def train_boxed_model(bench: Path, out: Path, steps: int = 40) -> Path:
    """A tiny model taught (teacher-forced, Adam) to answer each prompt with \\boxed{3} or \\boxed{4} + eos."""
    tok = load_tokenizer("builtin")
    model = build_model(CFG, seed=0)
    seqs = []
    for problem in load_math_dataset(bench):
        prompt = tok.encode(tok.apply_chat_template([{"role": "user", "content": problem.prompt}],
                                                    add_generation_prompt=True))
        for answer in ("3", "4"):
            seqs.append((prompt, tok.encode("\\boxed{" + answer + "}") + [tok.eos_token_id]))
    ids = torch.tensor([t for p, r in seqs for t in p + r])
    positions = torch.tensor([i for p, r in seqs for i in range(len(p) + len(r))])
    cu_seqlens = torch.tensor([0] + torch.tensor([len(p) + len(r) for p, r in seqs]).cumsum(0).tolist(),
                              dtype=torch.int32)
    labels = torch.tensor([t for p, r in seqs for t in [-100] * (len(p) - 1) + r + [-100]])  # next-token targets
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        hidden = model(ids, positions, cu_seqlens).hidden
        loss = torch.nn.functional.cross_entropy(model.logits(hidden), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    save_pretrained(model, out)
    return out


def app_from_cli(model_dir: Path, *extra: str) -> FastAPI:
    """The app exactly as `thinkrl serve --model DIR ...` builds it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", str(model_dir), "--num-slots", "8", "--max-seq-len", "256", "--device",
                              "cpu", "--served-model-name", "tiny", *extra])
    return build_app(args)


@pytest.fixture(scope="session")
def boxed_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval-model")
    bench = write_bench(root / "bench.jsonl", NUM_PROBLEMS)
    return train_boxed_model(bench, root / "model"), bench


@pytest.fixture(scope="module")
def served(boxed_model: tuple[Path, Path]) -> Iterator[Served]:
    model_dir, bench = boxed_model
    app = app_from_cli(model_dir)
    with serve_in_background(app) as base:
        yield Served(url=f"{base}/v1", app=app, model_dir=model_dir, model_name="tiny", bench=bench)


@pytest.fixture(scope="session")
def serve_app():
    """`serve_in_background` and `app_from_cli`, for tests that start a server of their own."""
    return serve_in_background, app_from_cli
