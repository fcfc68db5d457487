"""Generation throughput: thinkrl's engine vs transformers' ``generate``, and continuous vs static batching.

Same random weights (Seed-OSS architecture, saved by thinkrl in HF format and loaded by both), fp32 on CPU by
default. The matmul peak of the machine (device, dtype, threads) is measured first in the same run
(``benchmarks/_peak.py``) and each decode rate is also reported as a fraction of it. Prints one JSON line; a
progress line goes to stderr as each repeat of a model and its long-tail run end.

transformers runs in each of ``--transformers-setups``: ``dynamic`` (plain ``generate``, its default dynamic
cache) and ``static-compile`` (``cache_implementation="static"``, with which ``generate`` compiles the forward
itself on a GPU: ``torch.compile`` mode "reduce-overhead", i.e. CUDA graphs; on CPU the bench asks for it with a
``CompileConfig`` in Inductor's default mode; the untimed warm-up call is the timed call's exact shapes, so
compilation is not timed). ``--compile-decode`` also times thinkrl's compiled CPU decode step
(``compile_decode``). The ratio is against the fastest setup measured. The ``0.5b`` model (494M parameters,
Qwen2.5-0.5B's shape) is the size where launch overhead no longer decides.

    thinkrl bench generate [--device cpu] [--prompts 64] [--new-tokens 128] [--threads N]
    thinkrl bench generate --device cuda --models 0.5b --transformers-setups dynamic,static-compile
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time

import torch

import _peak  # siblings: benchmarks/ is on sys.path (thinkrl bench, python benchmarks/x.py, pytest)
from _cli import check_at_least, check_device, check_dtype, check_names, progress
from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import ModelConfig, build_model, load_pretrained, save_pretrained

# "demo": the model of recipes/tiny_sft.yaml (what `make demo` trains); "small": ~4x larger (3.3M).
MODELS = {
    "demo": ModelConfig(
        architecture="SeedOssForCausalLM", vocab_size=512, hidden_size=128, intermediate_size=384,
        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
        max_position_embeddings=2048, tie_word_embeddings=True,
    ),
    "small": ModelConfig(
        architecture="SeedOssForCausalLM", vocab_size=512, hidden_size=256, intermediate_size=768,
        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, attention_bias=True,
        max_position_embeddings=2048, rope_theta=1e7,
    ),
    # ~12M parameters: the larger training-step model of the peak targets (`bench rl-step --model medium`).
    "medium": ModelConfig(
        architecture="SeedOssForCausalLM", vocab_size=512, hidden_size=512, intermediate_size=1536,
        num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, attention_bias=True,
        max_position_embeddings=2048, rope_theta=1e7,
    ),
    # 494M parameters, the shape of Qwen2.5-0.5B (vocabulary included): a GPU comparison where launch overhead
    # is not everything (issue #11's fair baselines)
    "0.5b": ModelConfig(
        architecture="SeedOssForCausalLM", vocab_size=151936, hidden_size=896, intermediate_size=4864,
        num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2, attention_bias=True,
        max_position_embeddings=4096, rope_theta=1e6, tie_word_embeddings=True,
    ),
}
TRANSFORMERS_SETUPS = ("dynamic", "static-compile")
SIDE_NAMES = {"ours": "thinkrl", "plain": "thinkrl unpacked", "compiled": "thinkrl compiled"}  # progress lines
BENCH_MODEL = MODELS["demo"]
CLOCK = time.perf_counter  # main() sets it from --clock (_peak.CLOCKS)


class _IdTokenizer:
    """Benchmarks feed token ids; text is not needed."""

    pad_token_id = 1
    stop_token_ids = ()

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return ""


def _prompts(n: int, seed: int, vocab_size: int = 512) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(3, vocab_size) for _ in range(rng.randint(16, 64))] for _ in range(n)]


def bench_transformers(folder: str, prompts: list[list[int]], new_tokens: int, device: str, dtype: torch.dtype,
                       setup: str = "dynamic") -> float:
    """Tokens/s of one timed ``generate`` over ``prompts`` (left-padded, sampled, EOS ignored) in ``setup``."""
    import transformers

    # (transformers wraps PreTrainedModel.to in functools.wraps, whose typeshed `_Wrapped` does not bind self)
    model = transformers.AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()  # type: ignore[arg-type]
    width = max(map(len, prompts))
    ids = torch.tensor([[1] * (width - len(p)) + p for p in prompts], device=device)  # left padding
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    kwargs: dict[str, object] = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True,
                                     temperature=1.0, top_k=0, top_p=1.0, pad_token_id=1, eos_token_id=None)
    if setup == "static-compile":  # a static cache makes generate compile its forward (on a GPU; on CPU if asked)
        kwargs["cache_implementation"] = "static"
        if not device.startswith("cuda"):  # CUDA graphs ("reduce-overhead") are GPU-only: Inductor's default mode
            compile_config = transformers.CompileConfig(mode="default")
            compile_config._compile_all_devices = True  # type: ignore[assignment]  # transformers declares it None
            kwargs["compile_config"] = compile_config
        with torch.inference_mode():  # warm-up at the timed shapes: compilation and graph capture happen here
            model.generate(ids, attention_mask=mask, **kwargs)
    else:
        model.generate(ids[:2], attention_mask=mask[:2], **{**kwargs, "max_new_tokens": 4, "min_new_tokens": 4})
    _sync(device)
    start = CLOCK()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=mask, **kwargs)
    _sync(device)
    elapsed = CLOCK() - start
    assert out.shape[1] - width == new_tokens
    return len(prompts) * new_tokens / elapsed


def bench_thinkrl(folder: str, prompts: list[list[int]], new_tokens: int, device: str, dtype: torch.dtype,
                  packed_linears: bool | None = None, compile_decode: bool = False) -> float:
    """Tokens/s of one timed ``generate``; building the engine (``compile_decode``: its compilation) is not timed."""
    model = load_pretrained(folder, device=device, dtype=dtype)
    engine = LLMEngine(model, _IdTokenizer(), num_slots=len(prompts), max_seq_len=max(map(len, prompts)) + new_tokens,
                       packed_linears=packed_linears, compile_decode=compile_decode)
    params = SamplingParams(max_new_tokens=new_tokens, temperature=1.0, stop_token_ids=())
    engine.generate_from_ids(prompts[:2], SamplingParams(max_new_tokens=4, stop_token_ids=()))  # warm-up
    _sync(device)
    start = CLOCK()
    out = engine.generate_from_ids(prompts, params)
    _sync(device)
    elapsed = CLOCK() - start
    assert all(len(t.response_ids) == new_tokens for t in out)
    return len(prompts) * new_tokens / elapsed


def bench_long_tail(folder: str, device: str, dtype: torch.dtype, num_requests: int, slots: int, seed: int) -> dict:
    """Heavy-tailed max_new_tokens in [16, 512]: continuous batching vs static batches, same engine."""
    rng = random.Random(seed)
    prompts = _prompts(num_requests, seed + 1)
    lengths = [min(512, max(16, int(16 * rng.paretovariate(1.0)))) for _ in range(num_requests)]
    model = load_pretrained(folder, device=device, dtype=dtype)
    max_len = max(map(len, prompts)) + 512

    def requests(subset: range) -> list[Request]:
        return [Request(prompts[i], SamplingParams(max_new_tokens=lengths[i], stop_token_ids=(), seed=i))
                for i in subset]

    results = {}
    for mode in ("continuous", "static"):
        engine = LLMEngine(model, _IdTokenizer(), num_slots=slots, max_seq_len=max_len)
        _sync(device)
        start = CLOCK()
        if mode == "continuous":
            out = engine.generate(requests(range(num_requests)))
        else:  # a batch must finish entirely before the next one starts
            out = []
            for b in range(0, num_requests, slots):
                out += engine.generate(requests(range(b, min(b + slots, num_requests))))
        _sync(device)
        elapsed = CLOCK() - start
        tokens = sum(len(t.response_ids) for t in out)
        assert tokens == sum(lengths)
        results[f"{mode}_tokens_per_s"] = tokens / elapsed
    results["ratio"] = results["continuous_tokens_per_s"] / results["static_tokens_per_s"]
    results.update(num_requests=num_requests, slots=slots, total_tokens=sum(lengths),
                   max_new_tokens_mean=sum(lengths) / len(lengths), max_new_tokens_max=max(lengths))
    return results


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bfloat16 (GPU default)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--long-tail-requests", type=int, default=128)
    parser.add_argument("--long-tail-slots", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--transformers-setups", default="dynamic",
                        help=f"comma list of {', '.join(TRANSFORMERS_SETUPS)} (the ratio is against the fastest)")
    parser.add_argument("--models", default="demo,small", help=f"comma-separated, from {sorted(MODELS)}")
    parser.add_argument("--skip-long-tail", action="store_true", help="skip the continuous vs static batching run")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (interleaved); the best is reported")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--compile-decode", action="store_true",
                        help="also time thinkrl with compile_decode=True (CPU; compilation not timed)")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time (a shared CPU box, --threads 1)")
    args = parser.parse_args()
    check_at_least(parser, args, prompts=1, new_tokens=1, long_tail_requests=1, long_tail_slots=1, repeats=1,
                   threads=0)
    check_device(parser, args.device)
    check_dtype(parser, args.dtype)
    check_names(parser, "--models", args.models.split(","), MODELS)
    setups = args.transformers_setups.split(",")
    check_names(parser, "--transformers-setups", setups, TRANSFORMERS_SETUPS)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dtype_name = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(args.seed)
    peak_module = _peak
    if args.clock == "cpu" and not args.device.startswith("cpu"):
        parser.error("--clock cpu times CPU runs only")
    global CLOCK
    CLOCK = peak_module.CLOCKS[args.clock]
    peak = peak_module.measure_peak(args.device, dtype, clock=args.clock)
    results = {}
    for name in args.models.split(","):
        config = MODELS[name]
        with tempfile.TemporaryDirectory() as folder:
            save_pretrained(build_model(config, seed=args.seed), folder)
            prompts = _prompts(args.prompts, args.seed)
            theirs_setups = [] if args.skip_transformers else setups
            rates: dict[str, list[float]] = {"ours": [], "plain": []}
            if args.compile_decode:
                rates["compiled"] = []
            rates.update({f"transformers_{s}": [] for s in theirs_setups})
            for _ in range(args.repeats):  # interleaved, so a shared machine's load hits every side alike
                rates["ours"].append(bench_thinkrl(folder, prompts, args.new_tokens, args.device, dtype))
                rates["plain"].append(bench_thinkrl(folder, prompts, args.new_tokens, args.device, dtype, False))
                if args.compile_decode:
                    rates["compiled"].append(bench_thinkrl(folder, prompts, args.new_tokens, args.device, dtype,
                                                           compile_decode=True))
                for setup in theirs_setups:
                    rates[f"transformers_{setup}"].append(
                        bench_transformers(folder, prompts, args.new_tokens, args.device, dtype, setup))
                progress("generate", f"{name} repeat {len(rates['ours'])}/{args.repeats}: " + ", ".join(
                    f"{SIDE_NAMES.get(k, k)} {v[-1]:.1f}" for k, v in rates.items()) + " tokens/s")
            ours, plain = max(rates["ours"]), max(rates["plain"])
            per_setup = {s: max(rates[f"transformers_{s}"]) for s in theirs_setups}
            theirs = max(per_setup.values()) if per_setup else None
            long_tail = {} if args.skip_long_tail else bench_long_tail(
                folder, args.device, dtype, args.long_tail_requests, args.long_tail_slots, args.seed)
            if long_tail:
                progress("generate", f"{name} long tail: continuous {long_tail['continuous_tokens_per_s']:.1f} "
                                     f"tokens/s, static {long_tail['static_tokens_per_s']:.1f} tokens/s")
        # mean positions a decoded token attends to: its prompt plus, on average, half the new tokens
        context = sum(map(len, prompts)) / len(prompts) + args.new_tokens / 2
        flops = peak_module.forward_flops_per_token(config, context)
        results[name] = {
            "model_params": config.num_parameters(),
            "flops_per_token": round(flops), "mean_decode_context": round(context, 1),
            "thinkrl_fraction_of_peak": round(peak_module.fraction_of_peak(flops, ours, peak), 4),
            "transformers_fraction_of_peak": None if theirs is None else round(
                peak_module.fraction_of_peak(flops, theirs, peak), 4),
            "thinkrl_tokens_per_s": round(ours, 1),
            "thinkrl_unpacked_linears_tokens_per_s": round(plain, 1),  # packed_linears=False, same run
            "thinkrl_compiled_decode_tokens_per_s": round(max(rates["compiled"]), 1) if args.compile_decode else None,
            "ratio_compiled_vs_transformers": (round(max(rates["compiled"]) / theirs, 2)
                                               if args.compile_decode and theirs else None),
            "repeats_tokens_per_s": {k: [round(r, 1) for r in v] for k, v in rates.items()},
            "transformers_tokens_per_s": None if theirs is None else round(theirs, 1),  # its fastest setup
            "transformers_tokens_per_s_by_setup": {k: round(v, 1) for k, v in per_setup.items()},
            "transformers_static_compiled": "static-compile" in per_setup,  # on CPU through compile_config
            "ratio_vs_transformers": None if theirs is None else round(ours / theirs, 2),
            "long_tail": {k: round(v, 2) if isinstance(v, float) else v for k, v in long_tail.items()},
        }
    import transformers

    print(json.dumps({
        "benchmark": "generate",
        "prompts": args.prompts, "new_tokens": args.new_tokens, "device": args.device, "dtype": dtype_name,
        "clock": args.clock, "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "peak": peak.as_json(), "results": results,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "processor": platform.processor() or platform.machine(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None},
    }))


if __name__ == "__main__":
    main()
