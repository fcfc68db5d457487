"""`thinkrl` command line: thin entry points that load a config, build the parts and call them.

Each subcommand lives in the module that owns it and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. They are imported lazily so
``thinkrl --help`` stays fast and a missing optional dependency only affects
the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

BAD_PATH_ERRORS = (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError, PermissionError)
"""A path given that is missing, of the wrong kind (a folder for a file, a file for a folder) or not writable."""

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("thinkrl.engine.cli", "sample from a model (prints reasoning and answer)"),
    "data": ("thinkrl.tasks.cli", "write a JSONL dataset of a built-in task"),
    "sft": ("thinkrl.train.sft_cli", "cold-start supervised fine-tuning on solution traces"),
    "train": ("thinkrl.launch.train_cli", "RL training (DAPO, GRPO, ...) from a YAML recipe"),
    "export": ("thinkrl.train.export_cli", "a training checkpoint (sharded, any rank count) as a Hugging Face folder"),
    "eval": ("thinkrl.eval.cli", "evaluate a model on held-out tasks"),
    "demo": ("thinkrl.experiments.demo", "the tiny end-to-end recipe: data, SFT, DAPO, eval, report"),
    "ablate": ("thinkrl.experiments.ablate", "recipes x seeds on a built-in task: accuracy table and curves"),
    "learn": ("thinkrl.experiments.learning", "RL vs continued SFT vs RFT at equal FLOPs: splits, sweep, test"),
    "serve": ("thinkrl.serve.cli", "OpenAI-compatible HTTP server"),
    "bench": ("thinkrl.bench", "run a benchmark from benchmarks/ and print its JSON"),
    "tune": ("thinkrl.tune.cli", "AutoTuner: rank parallel layouts by predicted memory and step time"),
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `thinkrl` console script."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="thinkrl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        if chosen == name:
            importlib.import_module(module_name).add_arguments(sub_parser)
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of an error (default: one message, exit status 2)")
    args, extra = parser.parse_known_args(argv)
    if extra and args.command in ("sft", "train") and all(_is_override(a) for a in extra):
        args.overrides += extra  # `train recipe.yaml --resume trainer.steps=9`: overrides after an option
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except BrokenPipeError:  # `thinkrl data --list | head`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at interpreter exit)
        return 141  # 128 + SIGPIPE, the status a shell reports for a command killed by it
    except (ValueError, *BAD_PATH_ERRORS) as error:  # bad input: a recipe, a file, a value
        if args.traceback:
            raise
        print(f"thinkrl {args.command}: error: {_one_line(error)} (--traceback for details)", file=sys.stderr)
        return 2
    except RuntimeError as error:  # the engine or the rollout side failed (a killed rollout process...): one line
        if args.traceback or not _is_run_failure(error):
            raise
        print(f"thinkrl {args.command}: failed: {error} (--traceback for details)", file=sys.stderr)
        return 1


def _is_override(arg: str) -> bool:
    """A dotted ``key=value`` override (``trainer.steps=9``), as the recipe commands take them."""
    key, equals, _ = arg.partition("=")
    return bool(equals) and not arg.startswith("-") and key.replace(".", "").replace("_", "").isalnum()


def _one_line(error: BaseException) -> str:
    """The message of ``error`` on one line; a pydantic error that escaped its loader lists ``field: problem``."""
    from pydantic import ValidationError

    from thinkrl.spec import describe_errors

    if isinstance(error, ValidationError):
        return f"invalid {error.title}: {describe_errors(error)}"
    return " ".join(str(error).split("\n"))


def _is_run_failure(error: BaseException) -> bool:
    """Whether ``error`` is a failure of a run's engine or rollout side, whose message says what happened."""
    from thinkrl.engine.loop import EngineError  # imported by then: only a run that used them raises these
    from thinkrl.rollout.streaming import RolloutError

    return isinstance(error, (EngineError, RolloutError))


if __name__ == "__main__":
    sys.exit(main())
