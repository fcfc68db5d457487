"""The cost of the weight boundary: pushing a trainer's weights into the engine's own copy.

For each model size: `LLMEngine.update_weights` (named tensors copied in place, names and shapes checked first),
the same push through the engine client (`EngineLoop.update_weights`: queued, applied between two steps, the
caller blocks until done), the same push to an engine in a rollout process (`RolloutProcess.update_weights`:
copied into a shared-memory buffer, applied by the child between two steps, acknowledged; ``--no-process`` skips
it), and two references measured in the same run: ``model.load_state_dict`` (how HF-style
code reloads weights) and one flat copy of the same number of bytes (the machine's memory-copy floor).
Prints one JSON line; a progress line goes to stderr as each model size ends.

    thinkrl bench weight-push [--device cpu] [--repeats 20] [--sizes demo,12m,100m] [--no-process]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from _cli import check_at_least, check_device, check_names, progress  # siblings: benchmarks/ is on sys.path
from _model_shapes import SizedModelShape
from thinkrl.engine import LLMEngine
from thinkrl.engine.loop import EngineLoop
from thinkrl.engine.weights import named_weights
from thinkrl.model import CausalLM, ModelConfig, build_model
from thinkrl.rollout.process import start_engine_process
from thinkrl.tokenizer import load_tokenizer

SIZES: dict[str, SizedModelShape] = {  # Seed-OSS architecture; "demo" is the model `make demo` trains
    "demo": dict(vocab_size=512, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True),
    "12m": dict(vocab_size=512, hidden_size=384, intermediate_size=1152, num_hidden_layers=7,
                num_attention_heads=6, num_key_value_heads=2),
    "100m": dict(vocab_size=32000, hidden_size=768, intermediate_size=2048, num_hidden_layers=10,
                 num_attention_heads=12, num_key_value_heads=4),
}


class _IdTokenizer:
    pad_token_id = 0
    stop_token_ids = ()

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return ""


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_ms(fn: Callable[[], object], repeats: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _process_ms(trainer: CausalLM, weights: list, repeats: int, device: torch.device) -> float:
    """Median push into an engine in a rollout process (spawned here, stopped after)."""
    # The built-in tokenizer crosses to the child as data (a stub class defined in a script would not unpickle).
    client = start_engine_process(trainer, load_tokenizer("builtin"), num_slots=4, max_seq_len=64, seed=0,
                                  device=str(device), cuda_graphs=False)
    version = iter(range(1, 10**9))
    try:
        return _median_ms(lambda: client.update_weights(weights, next(version)), repeats, device)
    finally:
        client.stop()


def bench_size(name: str, device: torch.device, repeats: int, process: bool = True) -> dict:
    config = ModelConfig(architecture="SeedOssForCausalLM", attention_bias=True, **SIZES[name])
    trainer = build_model(config, device=device, seed=0)
    engine = LLMEngine(copy.deepcopy(trainer).eval().requires_grad_(False), _IdTokenizer(), num_slots=4,
                       max_seq_len=64, cuda_graphs=False)
    weights = named_weights(trainer)
    num_bytes = sum(t.numel() * t.element_size() for _, t in weights)
    version = iter(range(1, 10**9))
    direct = _median_ms(lambda: engine.update_weights(weights, next(version)), repeats, device)
    with EngineLoop(engine) as loop:
        client = _median_ms(lambda: loop.update_weights(weights, next(version)), repeats, device)
    state = trainer.state_dict()
    reference = copy.deepcopy(trainer)
    load = _median_ms(lambda: reference.load_state_dict(state), repeats, device)
    flat_src = torch.empty(num_bytes // 4, dtype=torch.float32, device=device)
    flat_dst = torch.empty_like(flat_src)
    floor = _median_ms(lambda: flat_dst.copy_(flat_src), repeats, device)
    extra = {}
    if process:
        extra["process_update_weights_ms"] = round(_process_ms(trainer, weights, repeats, device), 3)
        extra["process_vs_client"] = round(extra["process_update_weights_ms"] / client, 2)
    return {"model": name, "params": sum(t.numel() for _, t in weights), "mbytes": round(num_bytes / 2**20, 2),
            "update_weights_ms": round(direct, 3), "client_update_weights_ms": round(client, 3),
            "load_state_dict_ms": round(load, 3), "flat_copy_ms": round(floor, 3),
            "gbytes_per_s": round(num_bytes / 2**30 / (direct / 1000), 2),
            "ratio_vs_load_state_dict": round(load / direct, 2), "fraction_of_flat_copy": round(floor / direct, 3),
            **extra}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sizes", default="demo,12m,100m")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--no-process", action="store_true", help="skip the rollout-process placement")
    args = parser.parse_args()
    check_at_least(parser, args, repeats=1, threads=1)
    check_device(parser, args.device)
    check_names(parser, "--sizes", args.sizes.split(","), SIZES)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows = []
    for name in args.sizes.split(","):
        rows.append(bench_size(name, device, args.repeats, not args.no_process))
        process = rows[-1].get("process_update_weights_ms")
        progress("weight-push", f"{name}: update_weights {rows[-1]['update_weights_ms']} ms "
                                f"({rows[-1]['gbytes_per_s']} GB/s), client {rows[-1]['client_update_weights_ms']} ms"
                                + ("" if process is None else f", rollout process {process} ms"))
    print(json.dumps({"benchmark": "weight-push", "device": str(device), "threads": torch.get_num_threads(),
                      "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                      "torch": torch.__version__, "results": rows}))


if __name__ == "__main__":
    main()
