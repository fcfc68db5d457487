r"""Math answer verification: thinkrl's verifier vs the ``math-verify`` package (throughput, FP/FN vs labels).

Corpora (``--corpus``):

- ``outside`` (default): ``benchmarks/data/math_verify_tests.jsonl``, the labelled ``(gold, pred,
  expected)`` pairs of math-verify 0.9.0's own test-suite (shipped in its PyPI sdist, Apache-2.0),
  plus shuffled unequal pairs of its model outputs; built by ``benchmarks/math_verify_corpus.py``.
  Nobody on thinkrl wrote or labelled them.
- ``own``: ``benchmarks/data/math_pairs.jsonl``, built by `math_own_corpus.build_corpus` from hand-written cases
  wrapped in response templates; thinkrl was developed against it, so it measures little.

Errors are counted against the labels, false positives (accepted, label unequal) and false negatives
(rejected, label equal) apart. Timing on equal terms, two ways:

- *warm pooled*: both verifiers in ``--workers`` processes, freshly started and warmed on the same
  pairs for every pass, each with a parse cache of 4,096 entries (thinkrl's own ``parse_answer``
  cache; math-verify's ``parse`` results memoised the same way), so repeated references help both;
  thinkrl through ``MathVerifier.verify_batch`` (per-pair hard timeout), math-verify through
  ``verify(parse(gold), parse(pred))`` with the extraction targets its own test gives the pair (LaTeX
  and expressions by default) in a ``multiprocessing.Pool`` (its own signal timeouts);
- *cold in-process*: one process, no cache on either side (thinkrl's is cleared before every pair).

Prints one JSON line; a progress line goes to stderr as each warm pass (both verifiers) and the cold pass end.

    thinkrl bench math-verify [--corpus outside|own] [--workers 2] [--repeats 3] [--markdown FILE]
    python benchmarks/bench_math_verify.py --write-corpus   # rebuild the own corpus file
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import time
from pathlib import Path

from _cli import check_at_least, progress  # siblings: benchmarks/ is on sys.path
from math_own_corpus import build_corpus  # siblings: benchmarks/ is on sys.path
from thinkrl.rewards.math import MathVerifier, score_answer

CORPUS = Path(__file__).resolve().parent / "data" / "math_pairs.jsonl"
OUTSIDE_CORPUS = Path(__file__).resolve().parent / "data" / "math_verify_tests.jsonl"
WARMUP = [(f"so \\boxed{{{i}/7}}", f"\\frac{{{i}}}{{7}}") for i in range(1, 25)]


def load_corpus(path: Path = CORPUS) -> list[dict]:
    """A committed corpus (one JSON object per line); rows without a category are grouped by source."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        row.setdefault("category", row.get("source", "").split("::")[-1])
    return rows


# -- math-verify side (module-level functions so pool workers can import them) -------------------
# math-verify's own tests parse both sides with these targets (tests/test_all.py::compare_strings).
_MV_CACHE: dict[tuple[str, tuple[str, ...]], object] = {}
_DEFAULT_TYPES = ("latex", "expr")


def _mv_parse(text: str, cached: bool, match_types: tuple[str, ...]) -> object:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    key = (text, match_types)
    if cached and key in _MV_CACHE:
        return _MV_CACHE[key]
    targets = {"latex": LatexExtractionConfig(boxed_match_priority=0), "expr": ExprExtractionConfig()}
    parsed = parse(text, [targets[t] for t in match_types])
    if cached:
        if len(_MV_CACHE) >= CACHE_SIZE:
            _MV_CACHE.pop(next(iter(_MV_CACHE)))
        _MV_CACHE[key] = parsed
    return parsed


def _mv_verify(item: tuple[str, str, bool, tuple[str, ...]]) -> bool:
    from math_verify import verify

    reference, response, cached, match_types = item
    return bool(verify(_mv_parse(reference, cached, match_types), _mv_parse(response, cached, match_types)))


def _mv_init() -> None:
    import logging

    logging.disable(logging.WARNING)  # math-verify logs every timeout and parse failure


CACHE_SIZE = 4096  # thinkrl's parse cache (score.parse_answer); math-verify gets the same in the warm runs


def run_math_verify(items: list[tuple[str, str, tuple[str, ...]]], workers: int) -> tuple[list[bool], float, float]:
    """Warm pooled pass (parse cache on both sides): verdicts, seconds for the pass, seconds to start the pool.

    ``items``: (reference, response, extraction targets) per pair.
    """
    start = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(workers, initializer=_mv_init) as pool:
        pool.map(_mv_verify, [(r, a, True, _DEFAULT_TYPES) for a, r in WARMUP], chunksize=1)
        ready = time.perf_counter()
        verdicts = list(pool.imap(_mv_verify, [(r, a, True, t) for r, a, t in items], chunksize=16))
        elapsed = time.perf_counter() - ready
    return verdicts, elapsed, ready - start


def run_thinkrl(pairs: list[tuple[str, str]], workers: int) -> tuple[list, float, float]:
    """Warm pooled pass (thinkrl's own parse cache): verdicts, seconds for the pass, seconds to start the pool."""
    start = time.perf_counter()
    with MathVerifier(num_workers=workers, timeout_s=5.0) as verifier:
        verifier.verify_batch(WARMUP)
        ready = time.perf_counter()
        verdicts = verifier.verify_batch([(response, reference) for reference, response in pairs])
        elapsed = time.perf_counter() - ready
    return verdicts, elapsed, ready - start


def cold_in_process(pairs: list[tuple[str, str]], mv_items: list[tuple[str, str, tuple[str, ...]]]) -> dict[str, float]:
    """Answers/s of both in this process with no cache at all (thinkrl's is cleared before every pair)."""
    from thinkrl.rewards.math.score import parse_answer

    _mv_init()
    start = time.perf_counter()
    for reference, response in pairs:
        parse_answer.cache_clear()
        score_answer(response, reference)
    ours = len(pairs) / (time.perf_counter() - start)
    start = time.perf_counter()
    for reference, response, match_types in mv_items:
        _mv_verify((reference, response, False, match_types))
    theirs = len(pairs) / (time.perf_counter() - start)
    return {"thinkrl_cold_per_s": round(ours, 1), "math_verify_cold_per_s": round(theirs, 1),
            "cold_speedup": round(ours / theirs, 2)}


def error_counts(verdicts: list[bool], labels: list[bool]) -> dict[str, int]:
    """False positives (accepted, label unequal) and false negatives (rejected, label equal)."""
    return {"false_positives": sum(v and not lb for v, lb in zip(verdicts, labels, strict=True)),
            "false_negatives": sum(lb and not v for v, lb in zip(verdicts, labels, strict=True))}


def write_markdown(path: Path, rows: list[dict], ours: list, theirs: list[bool], result: dict) -> None:
    """Results, agreement by category and every pair that either verifier gets wrong against its label."""
    lines = [
        f"# thinkrl vs math-verify on `{result['corpus']}` (generated)", "",
        f"{len(rows)} pairs. Command: `thinkrl bench math-verify --corpus "
        f"{'own' if result['corpus'] == CORPUS.name else 'outside'} --workers {result['workers']} "
        f"--markdown {path}`.", "",
        "```json", json.dumps(result, indent=2), "```", "",
        "## By category", "",
        "| category | pairs | agreement % | thinkrl = label % | math-verify = label % |",
        "|---|---|---|---|---|",
    ]
    for category in dict.fromkeys(r["category"] for r in rows):
        idx = [i for i, r in enumerate(rows) if r["category"] == category]
        pct = lambda hits: f"{100 * sum(hits) / len(idx):.1f}"  # noqa: B023, E731 (used at once)
        lines.append(f"| {category} | {len(idx)} | {pct(ours[i].correct == theirs[i] for i in idx)} | "
                     f"{pct(ours[i].correct == rows[i]['label'] for i in idx)} | "
                     f"{pct(theirs[i] == rows[i]['label'] for i in idx)} |")
    lines += ["", "## Pairs either verifier gets wrong against the label", "",
              "| id | category | reference | thinkrl extracted | thinkrl | math-verify | label |",
              "|---|---|---|---|---|---|---|"]
    for row, mine, other in zip(rows, ours, theirs, strict=True):
        if mine.correct != row["label"] or other != row["label"]:
            cells = [str(row["id"]), row["category"], _md(row["reference"][-90:]),
                     _md((mine.extracted or row["response"][-60:])[:90]), mine.reason, str(other), str(row["label"])]
            lines.append("| " + " | ".join(cells) + " |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _md(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("\n", " ").replace("`", "'") + "`"


CORPORA = {"outside": OUTSIDE_CORPUS, "own": CORPUS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="outside",
                        help="outside: math-verify's labelled test pairs (not written here); own: ours")
    parser.add_argument("--workers", type=int, default=2, help="worker processes for each verifier")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes (median reported)")
    parser.add_argument("--markdown", type=Path, default=None, help="write the disagreement list here")
    parser.add_argument("--write-corpus", action="store_true", help="rebuild benchmarks/data/math_pairs.jsonl")
    args = parser.parse_args()
    check_at_least(parser, args, workers=1, repeats=1)
    if args.write_corpus:
        rows = build_corpus()
        CORPUS.parent.mkdir(parents=True, exist_ok=True)
        CORPUS.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        print(json.dumps({"wrote": str(CORPUS), "pairs": len(rows)}))
        return
    try:
        import math_verify  # noqa: F401
    except ImportError:
        raise SystemExit("this benchmark needs math-verify: pip install 'math-verify[antlr4_13_2]'") from None
    rows = load_corpus(CORPORA[args.corpus])
    pairs = [(r["reference"], r["response"]) for r in rows]
    # math-verify finds LaTeX only between delimiters: our corpus's bare references get them (its tests' have them)
    mv_items = [(f"${r['reference']}$" if args.corpus == "own" else r["reference"], r["response"],
                 tuple(r.get("match_types", _DEFAULT_TYPES))) for r in rows]
    ours_s, theirs_s, ours_start, theirs_start = [], [], [], []
    for r in range(args.repeats):
        ours, seconds, startup = run_thinkrl(pairs, args.workers)
        ours_s.append(seconds)
        ours_start.append(startup)
        theirs, seconds, startup = run_math_verify(mv_items, args.workers)
        theirs_s.append(seconds)
        theirs_start.append(startup)
        progress("math-verify", f"warm pass {r + 1}/{args.repeats}: thinkrl {len(pairs) / ours_s[-1]:.1f} answers/s, "
                                f"math-verify {len(pairs) / seconds:.1f} answers/s")
    ours_ok = [o.correct for o in ours]
    labels = [r["label"] for r in rows]
    agree = sum(o == t for o, t in zip(ours_ok, theirs, strict=True))
    ours_rate = len(pairs) / statistics.median(ours_s)
    theirs_rate = len(pairs) / statistics.median(theirs_s)
    cold = cold_in_process(pairs, mv_items)
    progress("math-verify", f"cold pass: thinkrl {cold['thinkrl_cold_per_s']} answers/s, "
                            f"math-verify {cold['math_verify_cold_per_s']} answers/s")
    accuracy = lambda verdicts: round(100 * sum(v == lb for v, lb in zip(verdicts, labels, strict=True))  # noqa: E731
                                      / len(pairs), 2)
    result = {
        "bench": "math-verify", "corpus": CORPORA[args.corpus].name, "pairs": len(pairs),
        "equal_pairs": sum(labels), "workers": args.workers, "repeats": args.repeats,
        "thinkrl_answers_per_s": round(ours_rate, 1), "math_verify_answers_per_s": round(theirs_rate, 1),
        "speedup": round(ours_rate / theirs_rate, 2),
        **cold,
        "thinkrl_label_accuracy_pct": accuracy(ours_ok),
        "thinkrl": error_counts(ours_ok, labels),
        "math_verify_label_accuracy_pct": accuracy(theirs),
        "math_verify": error_counts(theirs, labels),
        "agreement_with_math_verify_pct": round(100 * agree / len(pairs), 2),
        "thinkrl_pool_start_s": round(statistics.median(ours_start), 2),
        "math_verify_pool_start_s": round(statistics.median(theirs_start), 2),
        "python": platform.python_version(), "cpus": multiprocessing.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # the machine may be shared: timings are noisy
    }
    if args.markdown:
        write_markdown(args.markdown, rows, ours, theirs, result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
