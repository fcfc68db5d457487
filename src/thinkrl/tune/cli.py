"""`thinkrl tune`: rank the parallel layouts of an RL run by predicted step time, with the memory they need.

    thinkrl tune --model seed-oss-36b --gpus 8 --gpu-mem-gb 80 [--json] [--out layout.yaml] [--profile machine.json]
    thinkrl tune profile --model config.json --gpus 8 [--tp 1,2 ...] --out machine.json   # measure this machine

``--model`` is a HF ``config.json`` (or its folder) or a built-in name (see ``--model list``). The target trainer
is `thinkrl train` unless ``--trainer full`` (`thinkrl.tune.trainer.TRAINER_PRESETS`): only layouts it runs are
ranked, the others are listed with the reason. Bad input is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    from thinkrl.tune.search import Candidate, SearchSpace, TuneResult
    from thinkrl.tune.shapes import ModelShape
    from thinkrl.tune.specs import ClusterSpec, WorkloadSpec
    from thinkrl.tune.trainer import TrainerSpec

CONFIG_DIR = Path(__file__).with_name("configs")
CLUSTER_FLAGS = ("gpus_per_node", "gpu_mem_gb", "reserved_gb", "peak_tflops", "mfu", "hbm_gbps",
                 "intra_node_gbps", "inter_node_gbps", "host_link_gbps", "host_adam_gbps")
WORKLOAD_FLAGS = ("prompt_len", "response_len", "group_size", "prompts_per_step", "forward_only_passes",
                  "precision", "attention", "rollout_seqs_per_engine")
SPACE_FLAGS = ("tp", "cp", "ep", "fsdp", "micro_batch_tokens", "recompute", "offload")


def builtin_models() -> list[str]:
    return sorted(p.stem.replace("_", "-") for p in CONFIG_DIR.glob("*.json"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", nargs="?", choices=["profile"], help="profile: measure this machine's op times "
                        "for the layouts the other flags select and write them to --out (see docs/autotuner.md)")
    parser.add_argument("--model", help=f"HF config.json or built-in: {', '.join(builtin_models())} (required)")
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the job")
    parser.add_argument("--cluster", default="h100-80gb", help="preset for the GPU figures (h100-80gb, "
                        "h200-141gb, a100-80gb); the flags below override it")
    for name in CLUSTER_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), type=float if name != "gpus_per_node" else int)
    for name in WORKLOAD_FLAGS:
        kind = str if name in ("precision", "attention") else int
        parser.add_argument("--" + name.replace("_", "-"), type=kind)
    parser.add_argument("--no-rollout", action="store_true", help="the rollout engine runs on other GPUs")
    parser.add_argument("--trainer", default="thinkrl", help="the trainer that runs the layout: thinkrl (thinkrl "
                        "train: no sequence or vocabulary parallelism, no cp/ep, no optimizer-only offload; only "
                        "layouts it runs are ranked) or full (every modelled feature, e.g. Megatron-LM)")
    parser.add_argument("--assume-sequence-parallel", action="store_true", help="model tp with sequence "
                        "parallelism (norms and residual stream split over tp ranks)")
    parser.add_argument("--assume-vocab-parallel", action="store_true", help="model tp with vocabulary-parallel "
                        "embedding, lm_head and logits")
    for name in SPACE_FLAGS:
        parser.add_argument("--" + name.replace("_", "-"), metavar="A,B,..", help=f"{name} values to try")
    parser.add_argument("--top", type=int, default=5, help="feasible layouts to print")
    parser.add_argument("--json", action="store_true", help="print JSON (every layout, with its reason)")
    parser.add_argument("--out", help="write the best layout as YAML (thinkrl.tune.load_layout reads it); with "
                        "profile: the profile JSON")
    parser.add_argument("--profile", help="a machine profile (thinkrl tune profile): step time from measured op "
                        "times instead of peak x mfu")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall", help="profile: how ops are timed "
                        "(cpu: this process's CPU seconds, for a CPU box shared with other jobs)")
    parser.add_argument("--device", default="cpu", help="profile: the torch device to measure (cpu, cuda)")


def _error(message: str) -> int:
    print(f"thinkrl tune: error: {message}", file=sys.stderr)
    return 2


def _validate(cls: type[BaseModel], raw: dict[str, Any], section: str) -> Any:
    try:
        return cls.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{section}.{'.'.join(map(str, e['loc'])) or section}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in err.errors())
        raise ValueError(problems) from None


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _parse_lists(args: argparse.Namespace) -> dict[str, list]:
    out: dict[str, list] = {}
    for name in SPACE_FLAGS:
        text = getattr(args, name)
        if text is None:
            continue
        items = [item.strip() for item in text.split(",") if item.strip()]
        if name in ("recompute", "offload"):
            out[name] = items
            continue
        try:
            out[name] = [int(item) for item in items]
        except ValueError:
            raise ValueError(f"--{name.replace('_', '-')} takes integers like 1,2,4, got {text!r}") from None
    return out


def _model_path(name: str) -> Path:
    builtin = CONFIG_DIR / f"{name.replace('-', '_')}.json"
    if builtin.exists() and not Path(name).exists():
        return builtin
    if not Path(name).exists():  # (else "no model config at NAME", which names no alternative)
        raise FileNotFoundError(f"--model {name}: neither a built-in model ({', '.join(builtin_models())}) nor a "
                                "config.json or a folder holding one")
    return Path(name)


def build_inputs(args: argparse.Namespace,
                 ) -> tuple[ModelShape, ClusterSpec, WorkloadSpec, SearchSpace, TrainerSpec]:
    """(shape, cluster, workload, space) from the arguments; ValueError names the bad one."""
    from thinkrl.tune import CLUSTER_PRESETS, ClusterSpec, WorkloadSpec, load_model_shape
    from thinkrl.tune.search import SearchSpace
    from thinkrl.tune.trainer import TRAINER_PRESETS

    if args.cluster not in CLUSTER_PRESETS:
        raise ValueError(f"unknown --cluster {args.cluster!r}; known: {', '.join(CLUSTER_PRESETS)}")
    cluster_raw = {**CLUSTER_PRESETS[args.cluster], "num_gpus": args.gpus,
                   "gpus_per_node": min(args.gpus, 8), **_given(args, CLUSTER_FLAGS)}
    cluster = _validate(ClusterSpec, cluster_raw, "cluster")
    workload_raw = {**_given(args, WORKLOAD_FLAGS), "rollout_colocated": not args.no_rollout}
    workload = _validate(WorkloadSpec, workload_raw, "workload")
    space = _validate(SearchSpace, _parse_lists(args), "search")
    if args.trainer not in TRAINER_PRESETS:
        raise ValueError(f"unknown --trainer {args.trainer!r}; known: {', '.join(TRAINER_PRESETS)}")
    assumed = {key: True for key, flag in (("sequence_parallel", args.assume_sequence_parallel),
                                           ("vocab_parallel", args.assume_vocab_parallel)) if flag}
    trainer = TRAINER_PRESETS[args.trainer].model_copy(update=assumed)
    return load_model_shape(_model_path(args.model)), cluster, workload, space, trainer


def _describe_trainer(trainer: TrainerSpec) -> str:
    sp = "with" if trainer.sequence_parallel else "no"
    vp = "vocabulary-parallel" if trainer.vocab_parallel else "replicated"
    return f"trainer: {trainer.name} (tp: {sp} sequence parallelism, {vp} embeddings/lm_head)"


def format_table(result: TuneResult, shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec, top: int,
                 trainer: TrainerSpec) -> str:
    """The ranked feasible layouts, then the rejected ones counted by reason with the closest example, and the
    fastest layout the trainer cannot run if it would fit."""
    gb = 1e9
    lines = [
        f"{shape.name}: {shape.total_params / 1e9:.1f}B parameters ({shape.active_params / 1e9:.1f}B active); "
        f"{cluster.num_gpus} GPUs x {cluster.gpu_mem_gb:g} GB ({cluster.usable_bytes / gb:.1f} GB usable); "
        f"{workload.prompts_per_step} prompts x {workload.group_size} responses x "
        f"({workload.prompt_len} + {workload.response_len}) tokens; {_describe_trainer(trainer)}",
        f"{'#':>3} {'tp':>3} {'cp':>3} {'ep':>3} {'fsdp':>4} {'mb_tokens':>9} {'recompute':>9} {'offload':>9}"
        f" {'peak GB':>8} {'train':>6} {'rollout':>7} {'step s':>8} {'micro':>5}",
    ]
    for rank, cand in enumerate(result.feasible[:top], 1):
        lay, mem, tim = cand.layout, cand.memory, cand.time
        assert mem is not None and tim is not None  # a feasible layout has both estimates
        lines.append(f"{rank:>3} {lay.tp:>3} {lay.cp:>3} {lay.ep:>3} {lay.fsdp:>4} {lay.micro_batch_tokens:>9} "
                     f"{lay.recompute:>9} {lay.offload:>9} {mem.peak / gb:>8.1f} {mem.train_peak / gb:>6.1f} "
                     f"{mem.rollout_peak / gb:>7.1f} {tim.step_s:>8.1f} {tim.num_micro_batches:>5}")
    total = len(result.feasible) + len(result.rejected)
    lines.append(f"{len(result.feasible)} of {total} layouts fit.")
    if not result.feasible:
        lines.append("No layout fits: add GPUs, shorten sequences, allow recompute/offload, or run the rollout engine "
                     "on other GPUs (--no-rollout).")
    kinds = Counter(_reason_kind(c.reason) for c in result.rejected)
    for kind, count in kinds.most_common():
        example = min((c for c in result.rejected if _reason_kind(c.reason) == kind), key=_overshoot)
        lines.append(f"  {count:>5} rejected: {kind} — e.g. {example.layout.describe()}: {example.reason}")
    unrunnable = [(c.time.step_s, c) for c in result.rejected if not c.runnable and c.time is not None]
    fastest = result.feasible[0].time if result.feasible else None
    best_s, best = min(unrunnable, key=lambda pair: pair[0], default=(0.0, None))
    if best is not None and (fastest is None or best_s < fastest.step_s):
        why = (best.reason or "").split(": ", 1)[-1]
        lines.append(f"Fastest layout that fits but {trainer.name} cannot run: {best.layout.describe()}, step "
                     f"{best_s:.1f} s ({why}; --trainer full ranks these).")
    return "\n".join(lines)


def _overshoot(candidate: Candidate) -> float:
    """The phase peak a memory rejection is about (0 for structural rejections), to show the closest miss."""
    mem, reason = candidate.memory, candidate.reason or ""
    if mem is None:
        return 0.0
    phases = {"rollout": mem.rollout_peak, "optimizer": mem.step_peak, "weight push": mem.push_peak}
    return next((peak for prefix, peak in phases.items() if reason.startswith(prefix)), mem.train_peak)


def _reason_kind(reason: str | None) -> str:
    text = reason or ""
    for prefix, phase in (("training needs", "training"), ("optimizer step needs", "the optimizer step"),
                          ("rollout needs", "rollout"), ("weight push needs", "the weight push")):
        if text.startswith(prefix):
            return "out of memory in " + phase
    return text.split(" (")[0]


def run(args: argparse.Namespace) -> int:
    from thinkrl.tune.layout import save_layout
    from thinkrl.tune.profile import load_profile
    from thinkrl.tune.search import tune

    if args.model is None:
        return _error("--model is required (a config.json, a built-in name, or list)")
    if args.model == "list":
        print("\n".join(builtin_models()))
        return 0
    if args.top < 1:
        return _error(f"--top must be >= 1, got {args.top}")
    try:
        shape, cluster, workload, space, trainer = build_inputs(args)
        profile = load_profile(args.profile) if args.profile else None
    except ValueError as err:
        return _error(str(err))
    if args.action == "profile":
        return _run_profile(args, shape, cluster, workload, space, trainer)
    result = tune(shape, cluster, workload, space, trainer, profile)
    if args.out and result.feasible:
        best = result.feasible[0]
        assert best.memory is not None and best.time is not None  # feasible: it fits, so both were estimated
        header = (f"thinkrl tune: {shape.name} on {cluster.num_gpus} GPUs x {cluster.gpu_mem_gb:g} GB; predicted "
                  f"peak {best.memory.peak / 1e9:.1f} GB, step {best.time.step_s:.1f} s")
        save_layout(best.layout, args.out, header)
    if args.json:
        print(json.dumps({
            "model": {"name": shape.name, "total_params": shape.total_params, "active_params": shape.active_params},
            "cluster": cluster.model_dump(), "workload": workload.model_dump(), "trainer": trainer.model_dump(),
            "feasible": [c.to_dict() for c in result.feasible], "rejected": [c.to_dict() for c in result.rejected],
        }))
    else:
        print(format_table(result, shape, cluster, workload, args.top, trainer))
    if not result.feasible:
        return 1
    return 0


def _run_profile(args: argparse.Namespace, shape: ModelShape, cluster: ClusterSpec, workload: WorkloadSpec,
                 space: SearchSpace, trainer: TrainerSpec) -> int:
    """Measure the op times of every layout of ``space`` that ``trainer`` runs and write them to ``--out``."""
    from thinkrl.model import resolve_device
    from thinkrl.tune.profile_measure import measure_profile
    from thinkrl.tune.search import check_layout, enumerate_layouts
    from thinkrl.tune.trainer import trainer_refusal

    if not args.out:
        return _error("thinkrl tune profile needs --out FILE (the profile JSON)")
    try:
        device = str(resolve_device(args.device))
    except ValueError as err:
        return _error(str(err))
    layouts = [lay for lay in enumerate_layouts(shape, cluster, workload, space)
               if check_layout(shape, cluster, workload, lay) is None
               and trainer_refusal(shape, lay, cluster.num_gpus, trainer) is None]
    if not layouts:
        return _error("no layout of the search space is valid for this trainer: nothing to profile")
    try:
        profile = measure_profile(shape, workload, layouts, trainer, cluster.num_gpus, args.clock, device,
                                  log=lambda line: print(line, file=sys.stderr, flush=True))
    except ValueError as err:
        return _error(str(err))
    Path(args.out).write_text(json.dumps(profile.model_dump(), indent=1) + "\n")
    print(f"wrote {args.out}: {len(profile.curves)} op curves for {len(layouts)} layouts ({args.clock} clock)")
    return 0
