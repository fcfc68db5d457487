"""`thinkrl export CHECKPOINT OUT`: a training checkpoint (sharded, from any number of ranks) as a Hugging Face
folder (config.json + safetensors + tokenizer files)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a step folder (runs/NAME/checkpoints/step-00000100) or a checkpoint "
                        "root, whose 'latest' is taken")
    parser.add_argument("out", help="folder to write the Hugging Face model to")


def run(args: argparse.Namespace) -> int:
    from thinkrl.train.dcp import export_policy

    print(export_policy(args.checkpoint, args.out))
    return 0
