"""What a learning-protocol model writes: terse answers or worked ones, and how often each is right.

`thinkrl learn` with ``terse_share`` trains the cold start on a mix of worked traces and terse ones (the answer
after an empty thinking block). This reads each protocol model's responses on the validation split (not the test
split, which is evaluated once by the protocol itself) and splits them by mode, so a gain can be attributed: to
choosing the worked mode more often, or to being right more often within a mode.

    python -m thinkrl.experiments.learning_modes --config recipes/learning/terse.yaml --name learning_terse \
        --seeds 0,1,2 --out docs/results/raw/learning_terse_modes.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from thinkrl.experiments.learning import Protocol, parse_seeds
from thinkrl.experiments.learning_arms import SampleSettings, sample_responses
from thinkrl.experiments.learning_config import check_run_settings, load_learning_config
from thinkrl.model import load_pretrained
from thinkrl.records import Trajectory
from thinkrl.spec import run_name
from thinkrl.tokenizer import ThinkTags, parse_completion

MODES_SEED = 777


def response_mode(text: str, tags: ThinkTags) -> str:
    """``"terse"`` (an empty thinking block, or none), ``"worked"`` (a non-empty one) or ``"unfinished"`` (the
    thinking block never closed)."""
    parsed = parse_completion(text, tags)
    if not parsed.thinking_finished and parsed.reasoning_content:
        return "unfinished"
    return "worked" if parsed.reasoning_content.strip() else "terse"


@dataclass(frozen=True)
class ModeSplit:
    """Responses of one model split by mode: counts and accuracy within each (None where a mode never occurs)."""

    responses: int
    worked_share: float
    terse_share: float
    unfinished_share: float
    accuracy: float
    worked_accuracy: float | None
    terse_accuracy: float | None


def split_by_mode(trajs: Sequence[Trajectory], tags: ThinkTags) -> ModeSplit:
    """Judged responses -> `ModeSplit`; ValueError if one is not judged."""
    if any(t.correct is None for t in trajs):
        raise ValueError("every response must be judged (correct set) before it is split by mode")
    by_mode: dict[str, list[bool]] = {"worked": [], "terse": [], "unfinished": []}
    for t in trajs:
        by_mode[response_mode(t.text, tags)].append(bool(t.correct))
    n = max(1, len(trajs))

    def acc(values: list[bool]) -> float | None:
        return sum(values) / len(values) if values else None

    return ModeSplit(len(trajs), len(by_mode["worked"]) / n, len(by_mode["terse"]) / n,
                     len(by_mode["unfinished"]) / n, sum(bool(t.correct) for t in trajs) / n,
                     acc(by_mode["worked"]), acc(by_mode["terse"]))


def model_dirs(root: Path, seed: int) -> dict[str, Path]:
    """The cold start and each arm's chosen model of one seed (from the protocol's test records)."""
    dirs = {"cold": root / f"seed-{seed}" / "cold" / "final"}
    for arm in ("sft_more", "rft", "rl"):
        record = json.loads((root / f"seed-{seed}" / "test" / f"{arm}.json").read_text())
        dirs[arm] = root / f"seed-{seed}" / "arms" / arm / f"lr={record['lr']:g}" / "final"
    return dirs


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the protocol's config (its splits and response cap)")
    parser.add_argument("--name", required=True, help="run folder runs/<name> of a finished protocol")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--samples", type=int, default=4, help="temperature-1 samples per problem")
    parser.add_argument("--out", required=True, help="JSON file to write")
    args = parser.parse_args(argv)
    config, recipe = load_learning_config(args.config)
    root = Path("runs") / run_name(args.name)
    check_run_settings(root, config, recipe)  # the splits below are the run's only if its settings are these
    protocol, settings, rows = Protocol(config, recipe, root), SampleSettings(max_new_tokens=config.max_new_tokens), []
    tokenizer = protocol.tokenizer
    for seed in parse_seeds(args.seeds):
        dirs = model_dirs(root, seed)  # before any sampling: a run without its test stage fails here
        val = protocol.splits(seed).val
        for model_name, folder in dirs.items():
            model = load_pretrained(folder, device="cpu")
            for label, samples, temperature in (("greedy", 1, 0.0), ("T=1", args.samples, 1.0)):
                trajs = sample_responses(model, tokenizer, val, samples, temperature, settings, MODES_SEED)
                split = split_by_mode(trajs, tokenizer.think_tags)
                rows.append({"seed": seed, "model": model_name, "decoding": label, **asdict(split)})
                print(json.dumps(rows[-1]))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = "python -m thinkrl.experiments.learning_modes " + " ".join(sys.argv[1:] if argv is None else argv)
    out.write_text(json.dumps({"command": command, "split": "validation", "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
