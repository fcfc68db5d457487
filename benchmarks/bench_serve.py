"""Serving under load: many concurrent streaming chat clients against a real `thinkrl serve` on loopback.

The server runs as its own process (``thinkrl serve`` on 127.0.0.1, a free port) with the demo model
(``MODELS["demo"]`` of bench_generate.py, random weights) and the built-in tokenizer; the clients are
one asyncio process with ``--clients`` concurrent streaming ``/v1/chat/completions`` requests
(``ignore_eos``, so every response is exactly ``--new-tokens`` long), all sent at once.

Reported: errors (any non-200 status, SSE error event, missing ``[DONE]`` or short response), time to
first token (first chunk with text) p50/p99, per-token latency (the gaps between a request's chunks,
per token, and the mean time per output token of each request) p50/p99, and total output tokens/s.
Peer, measured in the same run: the same requests (same prompts, lengths and slots) through the
engine in-process without HTTP (`LLMEngine.generate`), so ``server_vs_engine`` is the throughput
kept by the whole HTTP path (rendering, JSON, SSE, the engine loop thread, the event loop). Server and
engine runs are interleaved ``--repeats`` times; the best of each is reported (a shared machine's load varies).

Prints one JSON line; a progress line goes to stderr as each repeat (server, then engine) ends.

    thinkrl bench serve [--clients 200] [--new-tokens 64] [--num-slots 200] [--repeats 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import torch

import bench_generate  # a sibling: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
from _cli import check_at_least, progress
from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import CausalLM, ModelConfig, build_model, save_pretrained
from thinkrl.tokenizer import load_tokenizer


def _demo_config() -> ModelConfig:
    return bench_generate.MODELS["demo"]


def _messages(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Request {i}: what is {i} + {2 * i + 1}? Think step by step."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, port: int, num_slots: int, max_seq_len: int,
                 threads: int | None) -> subprocess.Popen[str]:
    """``thinkrl serve`` in a subprocess; returns it once ``/health`` answers ok."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    cmd = [sys.executable, "-c", "import sys; from thinkrl.cli import main; sys.exit(main())", "serve",
           "--model", str(model_dir), "--served-model-name", "demo", "--port", str(port), "--device", "cpu",
           "--num-slots", str(num_slots), "--max-seq-len", str(max_seq_len), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            assert proc.stderr is not None  # stderr=PIPE
            raise RuntimeError(f"thinkrl serve exited: {proc.stderr.read()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("thinkrl serve did not become healthy in 120 s")


async def one_client(client: httpx.AsyncClient, i: int, new_tokens: int) -> dict[str, Any]:
    """One streaming chat request: chunk arrival times, tokens, and what went wrong (if anything)."""
    body = {"model": "demo", "messages": _messages(i), "max_tokens": new_tokens, "temperature": 1.0, "seed": i,
            "ignore_eos": True, "stream": True, "stream_options": {"include_usage": True}}
    start, times, tokens, error, done = time.perf_counter(), [], 0, None, False
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                return {"error": f"status {response.status_code}"}
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                if line == "data: [DONE]":
                    done = True
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    error = chunk["error"]["message"]
                elif chunk.get("usage"):
                    tokens = chunk["usage"]["completion_tokens"]
                elif any(c["delta"].get("content") or c["delta"].get("reasoning_content") for c in chunk["choices"]):
                    times.append(time.perf_counter() - start)
    except httpx.HTTPError as exc:
        error = repr(exc)
    if error is None and (not done or tokens != new_tokens or not times):
        error = f"incomplete: done={done} tokens={tokens} chunks={len(times)}"
    return {"error": error, "times": times, "tokens": tokens}


async def run_clients(port: int, clients: int, new_tokens: int) -> tuple[list[dict[str, Any]], float]:
    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=600, limits=limits) as client:
        await one_client(client, -1, 4)  # warm-up
        start = time.perf_counter()
        results = await asyncio.gather(*[one_client(client, i, new_tokens) for i in range(clients)])
        return list(results), time.perf_counter() - start


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {"p50_ms": round(1000 * statistics.median(ordered), 2), "p99_ms": round(1000 * pick(0.99), 2),
            "max_ms": round(1000 * ordered[-1], 2)}


def summarize(results: list[dict[str, Any]], elapsed: float) -> dict[str, Any]:
    ok = [r for r in results if r["error"] is None]
    gaps = [b - a for r in ok for a, b in zip(r["times"], r["times"][1:], strict=False)]
    tpot = [(r["times"][-1] - r["times"][0]) / max(1, r["tokens"] - 1) for r in ok]
    errors = [r["error"] for r in results if r["error"] is not None]
    return {"errors": len(errors), "error_examples": errors[:3],
            "ttft": _percentiles([r["times"][0] for r in ok]) if ok else None,
            "inter_chunk": _percentiles(gaps) if gaps else None,
            "time_per_output_token": _percentiles(tpot) if tpot else None,
            "output_tokens": sum(r["tokens"] for r in ok), "wall_s": round(elapsed, 2),
            "tokens_per_s": round(sum(r["tokens"] for r in ok) / elapsed, 1)}


def engine_direct(model: CausalLM, clients: int, new_tokens: int, num_slots: int, max_seq_len: int) -> dict[str, Any]:
    """The peer: the same requests through the engine in-process (no HTTP)."""
    tok = load_tokenizer("builtin")
    engine = LLMEngine(model, tok, num_slots=num_slots, max_seq_len=max_seq_len)
    requests = [Request(tok.encode(tok.apply_chat_template(_messages(i))),
                        SamplingParams(max_new_tokens=new_tokens, temperature=1.0, seed=i, stop_token_ids=()))
                for i in range(clients)]
    engine.generate([Request([5, 6, 7], SamplingParams(max_new_tokens=4))])  # warm-up, as the server's
    start = time.perf_counter()
    out = engine.generate(requests)
    elapsed = time.perf_counter() - start
    tokens = sum(len(t.response_ids) for t in out)
    return {"output_tokens": tokens, "wall_s": round(elapsed, 2), "tokens_per_s": round(tokens / elapsed, 1)}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--num-slots", type=int, default=200)
    parser.add_argument("--max-seq-len", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the server and the peer")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved server / engine runs; best of each")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    check_at_least(parser, args, clients=1, new_tokens=1, num_slots=1, max_seq_len=2, threads=1, repeats=1)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = build_model(_demo_config(), seed=args.seed).eval()
    served, peers = [], []
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, Path(tmp))
        port = _free_port()
        server = start_server(Path(tmp), port, args.num_slots, args.max_seq_len, args.threads)
        try:  # interleaved repeats: both sides see the same background load of a shared machine
            for r in range(args.repeats):
                results, elapsed = asyncio.run(run_clients(port, args.clients, args.new_tokens))
                served.append(summarize(results, elapsed))
                with torch.inference_mode():
                    peers.append(engine_direct(model, args.clients, args.new_tokens, args.num_slots,
                                               args.max_seq_len))
                progress("serve", f"repeat {r + 1}/{args.repeats}: server {served[-1]['tokens_per_s']} tokens/s "
                                  f"({served[-1]['errors']} errors), engine {peers[-1]['tokens_per_s']} tokens/s")
            health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        finally:
            server.terminate()
            server.wait(30)
    best = max(served, key=lambda r: r["tokens_per_s"])
    peer = max(peers, key=lambda r: r["tokens_per_s"])
    report = {"bench": "serve", "clients": args.clients, "new_tokens": args.new_tokens, "num_slots": args.num_slots,
              "repeats": args.repeats, "total_errors": sum(r["errors"] for r in served),
              "server_best": best, "engine_direct_best": peer,
              "server_vs_engine": round(best["tokens_per_s"] / peer["tokens_per_s"], 3),
              "server_tokens_per_s_all": [r["tokens_per_s"] for r in served],
              "engine_tokens_per_s_all": [r["tokens_per_s"] for r in peers],
              "health_after": health.get("status"),
              "machine": {"nproc": os.cpu_count(), "cpu": _cpu_model(), "torch": torch.__version__,
                          "threads": torch.get_num_threads(), "load_average_1m": os.getloadavg()[0]},
              "date": time.strftime("%Y-%m-%d")}
    line = json.dumps(report)
    print(line)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
