"""`thinkrl` command line: thin entry points that load a config, build the parts and call them.

Each subcommand lives in the module that owns it and exposes two functions:
``add_arguments(parser)`` and ``run(args) -> int``. They are imported lazily so
``thinkrl --help`` stays fast and a missing optional dependency only affects
the command that needs it.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

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
    with _interrupts() as caught:
        try:
            status = int(importlib.import_module(args._module).run(args) or 0)
            return 128 + caught[0] if caught else status  # (a command that reported the interrupt itself)
        except BaseException as error:
            if caught and not args.traceback:  # whatever a library made of the interrupt: one line
                print(f"thinkrl {args.command}: interrupted ({caught[0].name})", file=sys.stderr)
                return 128 + caught[0]
            reported = _reported(error, args)
            if reported is None:
                raise
            return reported


def _reported(error: BaseException, args: argparse.Namespace) -> int | None:
    """Report ``error`` on one line and return the exit status; None for an error to show with its traceback."""
    if isinstance(error, BrokenPipeError):  # `thinkrl data --list | head`: the reader left; stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at interpreter exit)
        return 141  # 128 + SIGPIPE, the status a shell reports for a command killed by it
    if args.traceback:
        return None
    if isinstance(error, (ValueError, *BAD_PATH_ERRORS)):  # bad input: a recipe, a file, a value
        print(f"thinkrl {args.command}: error: {_one_line(error)} (--traceback for details)", file=sys.stderr)
        return 2
    if isinstance(error, RuntimeError) and _is_run_failure(error):  # the engine or the rollout side failed (a
        # killed rollout process...): one line
        print(f"thinkrl {args.command}: failed: {error} (--traceback for details)", file=sys.stderr)
        return 1
    return None


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C raises KeyboardInterrupt, so that the same cleanup runs (the
    ``finally`` blocks that stop rollout processes, worker pools and engines; the loops' ``except
    KeyboardInterrupt``) instead of the process vanishing without a word."""


FORCE_EXIT_S = 30.0
"""Seconds an interrupted command has to finish its cleanup before it exits regardless (a C call that never
returns to Python, or a cleanup that hangs, would otherwise keep it alive)."""


@contextlib.contextmanager
def _interrupts() -> Iterator[list[signal.Signals]]:
    """While a command runs: SIGINT raises KeyboardInterrupt and SIGTERM `Terminated`, once; the list yielded gets
    the signal. A second signal, or `FORCE_EXIT_S` seconds without the process ending, exits at once (status
    128 + the signal, no cleanup). Signals a shell told this process to ignore (``nohup``, background jobs) stay
    ignored; forked children, which inherit these handlers, get the default action."""
    caught: list[signal.Signals] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    owner, wake = os.getpid(), threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            for sig in previous:
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if caught:
            _force_exit(signum, "again")
        caught.append(signal.Signals(signum))
        wake.set()
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated

    def watchdog() -> None:  # started before any signal: a handler must not start threads (locks)
        wake.wait()
        if caught:
            time.sleep(FORCE_EXIT_S)
            _force_exit(caught[0], f"{FORCE_EXIT_S:g} s ago", where=True)

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    previous = {sig: old for sig, old in previous.items() if old in (signal.default_int_handler, signal.SIG_DFL)}
    threading.Thread(target=watchdog, name="interrupt-watchdog", daemon=True).start()
    for sig in previous:
        signal.signal(sig, handle)
    try:
        yield caught
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        wake.set()  # without a signal, the watchdog ends now; after one, it still bounds the exit


def _force_exit(signum: int, when: str, where: bool = False) -> None:
    """End the process now (from any thread), saying so: the cleanup after an interrupt did not end it. ``where``:
    also print every thread's stack (what the cleanup was stuck on)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"thinkrl: {signal.Signals(signum).name} {when}: exiting without waiting for the cleanup",
              file=sys.stderr, flush=True)
        if where:
            print("thinkrl: where each thread was:", file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    os._exit(128 + signum)


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
