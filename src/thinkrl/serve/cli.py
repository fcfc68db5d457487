"""`thinkrl serve`: load a model folder and serve it over an OpenAI-compatible HTTP API."""

from __future__ import annotations

import argparse
import logging
import socket
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `thinkrl serve`."""
    parser.add_argument("--model", required=True, help="HF-format model folder (config.json + safetensors)")
    parser.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the model folder if it has "
                        "tokenizer.json, else the built-in tokenizer)")
    parser.add_argument("--served-model-name", default=None, help="model id clients use (default: folder name)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--num-slots", type=int, default=16, help="sequences decoded together (KV-cache slots)")
    parser.add_argument("--max-seq-len", type=int, default=2048, help="prompt + completion limit per request")
    parser.add_argument("--compile-decode", action="store_true", help="CPU: decode steps through torch.compile "
                        "(faster for small models; compiled when the engine starts, ~15-40 s)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    parser.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generator shared by unseeded requests")
    parser.add_argument("--no-budget-enforce", action="store_true",
                        help="render thinking_budget in the prompt only; do not force the end of thinking")
    parser.add_argument("--budget-reflect", action="store_true",
                        help="engine-side budget control also inserts the periodic budget reflections")
    parser.add_argument("--max-request-bytes", type=int, default=None,
                        help="larger request bodies are refused with 413 (default: max(1 MiB, 64 x max-seq-len))")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def check_arguments(args: argparse.Namespace) -> None:
    """ValueError naming the first option of ``args`` that cannot work, before the model is loaded."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in 0..65535, got {args.port}")
    if args.max_seq_len < 2:
        raise ValueError(f"--max-seq-len must be >= 2 (a prompt token and a completion token), got {args.max_seq_len}")
    if args.max_request_bytes is not None and args.max_request_bytes < 1:
        raise ValueError(f"--max-request-bytes must be >= 1, got {args.max_request_bytes}")
    try:
        socket.getaddrinfo(args.host or None, args.port, type=socket.SOCK_STREAM)  # "": every interface
    except (socket.gaierror, UnicodeError) as err:
        raise ValueError(f"--host {args.host!r} cannot be resolved: {err}") from None


def build_app(args: argparse.Namespace) -> FastAPI:
    """Load the model and tokenizer named by ``args`` and build the engine and the app."""
    from thinkrl.engine.engine import LLMEngine
    from thinkrl.model import load_pretrained
    from thinkrl.serve.app import budget_controller_factory, create_app
    from thinkrl.tokenizer import load_tokenizer

    check_arguments(args)
    model_dir = Path(args.model)
    tok_dir = args.tokenizer or (model_dir if (model_dir / "tokenizer.json").exists() else "builtin")
    tokenizer = load_tokenizer(tok_dir)
    model = load_pretrained(model_dir, device=args.device, dtype=args.dtype)
    if args.max_seq_len > model.config.max_position_embeddings:  # the KV cache is allocated for it up front
        raise ValueError(f"--max-seq-len {args.max_seq_len} exceeds the model's context of "
                         f"{model.config.max_position_embeddings} tokens")
    engine = LLMEngine(model, tokenizer, num_slots=args.num_slots, max_seq_len=args.max_seq_len, seed=args.seed,
                       compile_decode=args.compile_decode)
    controllers = budget_controller_factory(tokenizer, enforce=not args.no_budget_enforce, reflect=args.budget_reflect)
    return create_app(engine, tokenizer, model_name=args.served_model_name or model_dir.resolve().name,
                      make_controller=controllers, max_request_bytes=args.max_request_bytes)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = build_app(args)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0
