"""`thinkrl sft RECIPE.yaml [key=value ...]`: cold-start SFT."""

from __future__ import annotations

import argparse
import logging
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="SFT recipe YAML (see docs/configuration.md)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. optim.lr=3e-4 trainer.steps=200")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    parser.add_argument("--layout", default=None, help="parallel layout YAML from `thinkrl tune --out` "
                        "(micro-batch budget, recompute, tp/fsdp ranks under torchrun, offload; see docs/autotuner.md)")


def run(args: argparse.Namespace) -> int:
    from thinkrl.train.config import SFTRecipe, load_recipe
    from thinkrl.train.sft import run_sft

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from thinkrl.train.layout import overrides_from_layout

    overrides = overrides_from_layout(args.layout) + list(args.overrides) + (
        ["trainer.resume=true"] if args.resume else [])
    recipe = load_recipe(args.recipe, SFTRecipe, overrides)
    final = run_sft(recipe)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        print(final)
    return 0
