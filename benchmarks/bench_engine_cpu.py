"""CPU engine micro-costs behind three choices of the engine (docs/engine.md), measured in one run.

* ``linear``: one call of ``F.linear`` against a prepacked oneDNN linear, per weight shape and row count (where
  packing pays: `thinkrl.model.PACK_MIN_WEIGHTS`).
* ``decode_step``: one engine decode step of a model at 4 / 13 / 32 running rows with the default packing (only the
  layers large enough) against ``packed_linears=True`` (every layer) and against the compiled decode step
  (``compile_decode=True``; its compilation, when the engine is built, is not counted).
* ``prefill``: admitting 31 short prompts and one long one: length-grouped prefill (the engine's) against one forward
  padded to the longest row; and the prefill attention through SDPA (the engine's) against the batched ``baddbmm``
  of the decode path (`batched_attention`, what prefills used before).

Prints one JSON line; a progress line goes to stderr as each engine's decode steps and each other part end.
Example: ``OMP_NUM_THREADS=1 thinkrl bench engine-cpu --model micro``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from _cli import check_at_least, progress
from _model_shapes import TiedModelShape
from thinkrl.engine import LLMEngine, Request, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.model.decoder import batched_attention, cached_attention
from thinkrl.tokenizer import load_tokenizer

MODELS: dict[str, TiedModelShape] = {
    "micro": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "num_key_value_heads": 2, "tie_word_embeddings": True},  # bench streaming's policy
    "small": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
              "num_key_value_heads": 2, "tie_word_embeddings": True},
}
SHAPES = [(64, 128), (64, 256), (128, 64), (64, 512), (128, 512), (256, 512), (256, 768), (1024, 3072)]


def best_us(fn: Callable[[], object], repeats: int) -> float:
    """Best of ``repeats`` rounds of 50 calls, microseconds per call."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(50):
            fn()
        best = min(best, (time.perf_counter() - start) / 50)
    return best * 1e6


def linear_costs(repeats: int) -> list[dict[str, float]]:
    rows_out = []
    with torch.inference_mode():
        for rows in (13, 32):
            for n_in, n_out in SHAPES:
                x, w = torch.randn(rows, n_in), torch.randn(n_out, n_in)
                packed = torch.ops.mkldnn._reorder_linear_weight(w, 32)
                plain = best_us(partial(F.linear, x, w), repeats)
                onednn = best_us(partial(torch.ops.mkldnn._linear_pointwise, x, packed, None, "none", [], ""), repeats)
                rows_out.append({"rows": rows, "in": n_in, "out": n_out, "weights": n_in * n_out,
                                 "f_linear_us": round(plain, 1), "packed_us": round(onednn, 1)})
    return rows_out


def _engine(model_name: str, packed: bool | None, slots: int = 32, compiled: bool = False) -> LLMEngine:
    tokenizer = load_tokenizer("builtin")
    model = build_model(ModelConfig(vocab_size=tokenizer.vocab_size, **MODELS[model_name]), seed=0).eval()
    return LLMEngine(model, tokenizer, num_slots=slots, max_seq_len=512, packed_linears=packed,
                     compile_decode=compiled)


def decode_step_ms(engine: LLMEngine, rows: int, steps: int = 150) -> float:
    for i in range(rows):
        engine.add_request(Request(list(range(5, 35)), SamplingParams(max_new_tokens=steps + 1, seed=i,
                                                                      stop_token_ids=()), request_id=(rows, i)))
    with torch.inference_mode():
        engine.step()  # prefill
        start = time.perf_counter()
        for _ in range(steps):
            engine.step()
        elapsed = (time.perf_counter() - start) / steps
        while engine.has_unfinished():
            engine.step()
    return elapsed * 1e3


def prefill_ms(engine: LLMEngine, grouped: bool, repeats: int) -> float:
    best = float("inf")
    for r in range(repeats):
        prompts = [list(range(5, 35))] * 31 + [list(range(5, 291))]
        for i, prompt in enumerate(prompts):
            engine.add_request(Request(prompt, SamplingParams(max_new_tokens=1, stop_token_ids=()),
                                       request_id=(grouped, r, i)))
        with torch.inference_mode():
            states = engine.scheduler.admit()
            start = time.perf_counter()
            engine._prefill_logits(states) if grouped else engine._eager_logits(states, prefix=False)
            best = min(best, time.perf_counter() - start)
        for state in states:
            engine.scheduler.release(state)
    return best * 1e3


def attention_ms(rows: int, length: int, repeats: int) -> dict[str, float]:
    q, k, v = torch.randn(rows, 4, length, 16), torch.randn(rows, 2, length, 16), torch.randn(rows, 2, length, 16)
    pos = torch.arange(length)
    bias = torch.where(pos[None, :] <= pos[:, None], 0.0, float("-inf")).expand(rows, 1, length, length).contiguous()
    with torch.inference_mode():
        torch.testing.assert_close(cached_attention(q, k, v, bias), batched_attention(q, k, v, bias))
        return {"rows": rows, "length": length,
                "sdpa_ms": round(best_us(lambda: cached_attention(q, k, v, bias), repeats) / 1e3, 2),
                "baddbmm_ms": round(best_us(lambda: batched_attention(q, k, v, bias), repeats) / 1e3, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="micro")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    check_at_least(parser, args, repeats=1)
    decode = {}
    for label, packed, compiled in (("default", None, False), ("all_packed", True, False),
                                    ("compiled", None, True)):
        engine = _engine(args.model, packed, compiled=compiled)
        decode[label] = {str(rows): round(decode_step_ms(engine, rows), 3) for rows in (4, 13, 32)}
        progress("engine-cpu", f"decode step {label}: " + ", ".join(f"{rows} rows {ms} ms"
                                                                   for rows, ms in decode[label].items()))
    engine = _engine(args.model, None)
    linear = linear_costs(args.repeats)
    faster = sum(r["packed_us"] < r["f_linear_us"] for r in linear)
    progress("engine-cpu", f"linear: packed faster than F.linear in {faster}/{len(linear)} (rows, shape) cases")
    prefill = {"grouped": round(prefill_ms(engine, True, args.repeats), 2),
               "one_forward": round(prefill_ms(engine, False, args.repeats), 2)}
    progress("engine-cpu", f"prefill 31 short + 1 long: grouped {prefill['grouped']} ms, "
                           f"one forward {prefill['one_forward']} ms")
    attention = [attention_ms(32, n, args.repeats) for n in (64, 128, 286)]
    progress("engine-cpu", "prefill attention, 32 rows, sdpa / baddbmm: " + ", ".join(
        f"length {a['length']} {a['sdpa_ms']} / {a['baddbmm_ms']} ms" for a in attention))
    result = {
        "benchmark": "engine-cpu", "model": args.model, "linear": linear, "decode_step_ms": decode,
        "prefill_31_short_1_long_ms": prefill, "prefill_attention": attention,
        "machine": f"{platform.machine()} {torch.get_num_threads()} torch threads",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
