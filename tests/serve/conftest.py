"""A real `thinkrl serve` app (built from CLI arguments) on uvicorn, on 127.0.0.1, in a background thread."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI

from thinkrl.model import ModelConfig, build_model, save_pretrained
from thinkrl.serve.background import serve_in_background
from thinkrl.serve.cli import add_arguments, build_app

CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=2, num_key_value_heads=1)
MAX_SEQ_LEN = 256
NUM_SLOTS = 4


@dataclass
class Served:
    url: str  # API root, e.g. http://127.0.0.1:PORT/v1
    app: FastAPI
    model_dir: Path
    model_name: str
    max_seq_len: int




@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-model")
    save_pretrained(build_model(CFG, seed=0), path)
    return path


def app_from_cli(model_dir: Path, *extra: str) -> FastAPI:
    """The app exactly as `thinkrl serve --model DIR ...` builds it."""
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--model", str(model_dir), "--num-slots", str(NUM_SLOTS), "--max-seq-len",
                              str(MAX_SEQ_LEN), "--device", "cpu", "--served-model-name", "tiny", *extra])
    return build_app(args)


@pytest.fixture(scope="session")
def serve_app() -> Callable[[FastAPI], AbstractContextManager[str]]:
    """`serve_in_background`, for tests that start a server of their own."""
    return serve_in_background


@pytest.fixture(scope="module")
def served(model_dir: Path) -> Iterator[Served]:
    app = app_from_cli(model_dir)
    with serve_in_background(app) as base:
        yield Served(url=f"{base}/v1", app=app, model_dir=model_dir, model_name="tiny",
                     max_seq_len=MAX_SEQ_LEN)
