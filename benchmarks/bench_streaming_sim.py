"""A discrete-event simulation of RL rollout + training, synchronous vs streaming, at cluster scale.

Model (the same rules as `thinkrl.rollout.streaming`):

* Rollout engines decode with continuous batching; one decode step of an engine costs
  ``step_fixed + step_per_seq x running + ctx_cost x (tokens in the running sequences' contexts)`` (a memory-bound
  decode reads the weights once per step and every running sequence's KV cache). The engines of a pool are
  simulated as one fluid engine with all their slots (each real engine steps in parallel with 1/E of the load).
* Training costs ``train_per_token`` per response token; a weight push costs ``push``.
* Synchronous (colocated): every GPU samples the step's P x G responses, then every GPU trains on them.
* Streaming (disaggregated): ``rollout_share`` of the GPUs sample continuously, the rest train; groups are admitted
  by one of the rules below; at a push every in-flight response is interrupted and its KV recomputed
  (``prefill_per_token`` per token so far), keeping its place ahead of queued new responses; a group no later batch
  could train is waited for (``wait_for_due``: the driver's own rule, `take_strands_a_group`) or dropped and
  sampled again.

Admission rules (``admit``): "batch" (the driver's default, and AReaL's count): fewer than ``P x (eta + 1 -
pending)`` groups in flight or buffered; "slots" (``rollout.admission: slots``): the same, and only while the pool
has free slots for the group; "fill" (over-provisioned, as SRS: keep every slot busy, at most ``P x (eta + 1)``
groups, no ``pending`` term); "throttle": the batch rule, but no new group while one that only the next batch can
train is in flight (the pool drains so the long tail decodes faster). Whatever the rule, the bound is enforced by
waiting or dropping, so no trained token ever lags more than eta versions.

The latency bound (``latency_bound``): a response of length L admitted right after push v must be trained by the
batch taken after push v + eta, and decodes at best at one token per ``step_fixed`` (a pool running it alone); so
with a response near the longest length in every step, eta steps last at least ``L_max x step_fixed`` and
streaming without drops is at most ``sync step x eta / (L_max x step_fixed)`` times faster than sync, whatever the
admission rule. The ceiling with no bound at all is the same simulation with eta = 10^6 and the "fill" rule.
``admission_only``: eta bounds admission only, as AReaL's staleness manager does (nothing waited for or dropped);
the lag the trained tokens then actually have is reported beside the throughput.

Cluster figures (``--cluster``): Seed-OSS-36B (64 layers, 8 KV heads x 128 head dim, bf16: 72 GB of weights,
262,144 B of KV cache per token; config in docs/model.md / the Hub config.json) on NVIDIA H100 SXM (3.35 TB/s HBM3,
989 TFLOP/s dense bf16: NVIDIA H100 Tensor Core GPU datasheet), tensor-parallel 8 per engine, 70% of HBM bandwidth
in decode, 40% MFU in training with 8 x params FLOPs per token (forward + backward + the proximal forward of
decoupled PPO), 50% MFU in prefill; weight push 72 GB at 50 GB/s. Lengths: 90% uniform in [2K, 4K], 10% uniform in
(4K, 32K] (a 32K long tail: most short, a tenth up to 8x longer).

CPU validation (``--calibration FILE``, the JSON of ``thinkrl bench streaming``): the measured per-step engine cost
and per-token training cost of that run, its workload, one engine, and per response the rest of the sync mode's
rollout time (which anchors the sim's sync throughput to the measured one); trainer and rollout share the same CPU,
so the sim gives bounds for streaming: full overlap (rollout and training on separate cores) and no overlap (their
work adds up, with the sync mode's or the streaming mode's measured training cost); the measured ratio should lie
between them.

Prints one JSON line; a progress line goes to stderr as each eta of the cluster study, its no-bound ceiling, each eta
of admission-only bounds and each validated CPU mode end.

    thinkrl bench streaming-sim [--gpus 64] [--steps 30] [--calibration docs/results/raw/streaming.json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from _cli import check_at_least, load_report, progress  # siblings: benchmarks/ is on sys.path
from thinkrl.rollout.buffer import take_strands_a_group


@dataclass(frozen=True)
class Costs:
    """Seconds: per decode step of the rollout pool, per running sequence, per context token; per trained token
    (on the training GPUs); per recomputed prompt token; per weight push."""

    step_fixed: float
    step_per_seq: float
    ctx_cost: float
    train_per_token: float
    prefill_per_token: float
    push: float
    per_response: float = 0.0  # rollout work per finished response besides decoding (prefill, scoring, ...)


@dataclass(frozen=True)
class Workload:
    prompts: int  # P groups per step
    group: int  # G responses per group
    slots: int  # decode slots of the rollout pool
    prompt_len: int
    draw: Callable[[random.Random], int]  # a response length


def cluster_setup(gpus: int, rollout_gpus: int) -> tuple[Costs, Workload]:
    """Seed-OSS-36B on H100s (see the module docstring), ``rollout_gpus`` of ``gpus`` sampling (TP 8 engines)."""
    engines = rollout_gpus // 8
    bandwidth, flops = 3.35e12, 989e12
    weights, kv_per_token, params = 72e9, 262_144, 36e9
    step_fixed = weights / 8 / (0.7 * bandwidth)  # each engine reads its weight shard once per step
    ctx_cost = kv_per_token / 8 / (0.7 * bandwidth) / engines  # fluid pool: the load is spread over the engines
    train_gpus = gpus - rollout_gpus if rollout_gpus < gpus else gpus
    costs = Costs(step_fixed=step_fixed, step_per_seq=0.0, ctx_cost=ctx_cost,
                  train_per_token=8 * params / (train_gpus * 0.4 * flops),
                  prefill_per_token=2 * params / (rollout_gpus * 0.5 * flops), push=weights / 50e9)
    draw = lambda rng: rng.randint(2048, 4096) if rng.random() < 0.9 else rng.randint(4097, 32768)  # noqa: E731
    return costs, Workload(prompts=32, group=16, slots=64 * engines, prompt_len=512, draw=draw)


def _decode(costs: Costs, n: int, ctx: int, k: int) -> float:
    """Time of ``k`` decode steps with ``n`` running sequences whose contexts hold ``ctx`` tokens at the start."""
    return k * (costs.step_fixed + costs.step_per_seq * n) + costs.ctx_cost * (k * ctx + n * k * (k - 1) / 2)


def simulate_sync(costs: Costs, work: Workload, steps: int, seed: int = 0) -> dict[str, float]:
    """Each step: sample P x G responses (continuous batching), then train on them, then push."""
    rng, clock, samples, idle = random.Random(seed), 0.0, 0, 0.0
    for _ in range(steps):
        lengths = [work.draw(rng) for _ in range(work.prompts * work.group)]
        rollout = _rollout_time(costs, work, lengths) + costs.per_response * len(lengths)
        clock += rollout + costs.train_per_token * sum(lengths) + costs.push
        idle += rollout
        samples += len(lengths)
    return {"samples_per_s": samples / clock, "step_s": clock / steps, "trainer_idle_frac": idle / clock}


def _rollout_time(costs: Costs, work: Workload, lengths: list[int]) -> float:
    """Continuous batching of ``lengths`` on the pool's slots: time until the last one finishes."""
    running: list[tuple[int, int]] = []  # heap of (finish step, length)
    queue, t, step, ctx = list(lengths), 0.0, 0, 0
    while queue or running:
        while queue and len(running) < work.slots:
            length = queue.pop()
            heapq.heappush(running, (step + length, length))
            ctx += work.prompt_len
        k = running[0][0] - step
        t += _decode(costs, len(running), ctx, k)
        ctx += len(running) * k
        step += k
        while running and running[0][0] == step:
            ctx -= work.prompt_len + heapq.heappop(running)[1]
    return t


@dataclass
class _Seq:
    group: int
    left: int
    done: int = 0


@dataclass
class _Stream:
    """The state of a streaming simulation."""

    clock: float = 0.0
    version: int = 0
    pending: bool = False
    taken: int = 0
    next_id: int = 0
    dropped: int = 0
    lags: list[int] = field(default_factory=list)  # per trained group: trainer version - the group's start version
    idle: float = 0.0
    trainer_free_at: float = 0.0
    train_end: float | None = None


def simulate_streaming(costs: Costs, work: Workload, steps: int, eta: int, wait_for_due: bool = True,
                       overlap: bool = True, seed: int = 0, admit: str = "batch",
                       enforce: bool = True) -> dict[str, float]:
    """Rollout runs continuously; the trainer takes P finished groups (staleness eta), trains, pushes.

    ``overlap`` False: trainer and rollout share one compute resource (the rollout pauses while the trainer trains).
    ``enforce`` False: eta bounds admission only (AReaL's staleness manager): nothing is waited for or dropped, and
    the lag of the trained groups' oldest tokens is reported instead (``lag_max``, ``lag_over_eta_frac``).
    """
    rng, st = random.Random(seed), _Stream()
    groups: dict[int, list[int]] = {}  # in flight: id -> [start version, responses left, tokens]
    buffer: list[tuple[int, int, int]] = []  # finished: (id, start version, tokens)
    running: list[_Seq] = []
    queue: list[_Seq] = []
    while st.taken < steps or st.train_end is not None:
        if st.train_end is not None and st.clock >= st.train_end:  # push: interrupt, recompute KV, new version
            st.clock += costs.push + costs.prefill_per_token * sum(work.prompt_len + s.done for s in running)
            st.version, st.pending, st.train_end, st.trainer_free_at = st.version + 1, False, None, st.clock
            if not enforce:
                continue
            st.dropped += sum(st.version - g[1] > eta for g in buffer)
            buffer[:] = [g for g in buffer if st.version - g[1] <= eta]
            for gid in [gid for gid, g in groups.items() if st.version - g[0] > eta]:
                st.dropped += 1  # in flight past the bound: dropped (its prompt is sampled again)
                del groups[gid]
                running[:] = [s for s in running if s.group != gid]
                queue[:] = [s for s in queue if s.group != gid]
            continue
        while _may_admit(admit, work, eta, st, groups, len(buffer), len(running) + len(queue)):
            groups[st.next_id] = [st.version, work.group, 0]
            queue += [_Seq(st.next_id, work.draw(rng)) for _ in range(work.group)]
            st.next_id += 1
        while queue and len(running) < work.slots:
            running.append(queue.pop(0))
        if st.train_end is None and st.taken < steps and _ready(buffer, groups, st.version, eta if enforce else 10**9,
                                                                  work.prompts, wait_for_due and enforce):
            buffer.sort(key=lambda g: g[1])
            batch, buffer[:] = buffer[: work.prompts], buffer[work.prompts:]
            st.lags += [st.version - g[1] for g in batch]
            st.idle += st.clock - st.trainer_free_at
            st.train_end = st.clock + costs.train_per_token * sum(g[2] for g in batch)
            st.pending, st.taken = True, st.taken + 1
            if not overlap:
                st.clock = st.train_end  # the rollout waits for the shared resource
            continue
        if not running:
            assert st.train_end is not None, "simulation stalled"
            st.clock = st.train_end
            continue
        _decode_until(costs, work, st, running, groups, buffer)
    samples = steps * work.prompts * work.group
    return {"samples_per_s": samples / st.clock, "step_s": st.clock / steps,
            "trainer_idle_frac": st.idle / st.clock, "dropped_groups": st.dropped,
            "lag_max": max(st.lags, default=0), "lag_mean": sum(st.lags) / max(1, len(st.lags)),
            "lag_over_eta_frac": sum(lag > eta for lag in st.lags) / max(1, len(st.lags))}


def _may_admit(admit: str, work: Workload, eta: int, st: _Stream, groups: dict, buffered: int, requests: int) -> bool:
    """One more group may start under rule ``admit`` (see the module docstring)."""
    under_bound = len(groups) + buffered < work.prompts * (eta + 1 - st.pending)
    fits = requests + work.group <= work.slots or not requests
    if admit == "batch":
        return under_bound
    if admit == "slots":
        return under_bound and fits
    if admit == "fill":
        return fits and len(groups) + buffered < work.prompts * (eta + 1)
    if admit == "throttle":
        return under_bound and not any(st.version + st.pending - g[0] >= eta for g in groups.values())
    raise ValueError(f"unknown admission rule {admit!r}")


def _decode_until(costs: Costs, work: Workload, st: _Stream, running: list[_Seq], groups: dict,
                  buffer: list) -> None:
    """Decode until the next response finishes or the trainer's step ends, whichever is first."""
    k = min(s.left for s in running)
    ctx = sum(work.prompt_len + s.done for s in running)
    if st.train_end is not None:
        per = _decode(costs, len(running), ctx, 1)
        k = max(1, min(k, int((st.train_end - st.clock) / per) + 1))
    st.clock += _decode(costs, len(running), ctx, k)
    for s in running:
        s.left -= k
        s.done += k
    for s in [s for s in running if s.left == 0]:
        running.remove(s)
        st.clock += costs.per_response
        g = groups[s.group]
        g[1] -= 1
        g[2] += s.done
        if g[1] == 0:
            del groups[s.group]
            buffer.append((s.group, g[0], g[2]))


def _ready(buffer: list, groups: dict, version: int, eta: int, need: int, wait_for_due: bool) -> bool:
    """The driver's rule: ``need`` usable groups, and (``wait_for_due``) no group in flight to wait for first."""
    usable = sum(version - g[1] <= eta for g in buffer)
    wait = wait_for_due and take_strands_a_group([g[1] for g in buffer], [g[0] for g in groups.values()], version,
                                                 eta, need)
    return usable >= need and not wait


def cpu_setup(calibration_file: str) -> tuple[Costs, Workload, dict]:
    """Costs and workload of a ``thinkrl bench streaming`` run, from its JSON."""
    data = json.loads(Path(calibration_file).read_text())
    cal, w, sync = data["calibration"], data["workload"], data["results"]["sync"]
    short = w["short_len"]
    # The sync run's rollout time (its trainer idle time) less its decode steps' calibrated cost, per response:
    # everything else the rollout does (prefill, rendering, scoring, events), as measured in that same run.
    decode = sync["engine_steps"] * (cal["step_fixed_s"] + cal["step_per_seq_s"] * sync["decode_occupancy"]
                                     * w["slots"])
    per_response = max(0.0, (sync["trainer_idle_frac"] * sync["wall_s"] - decode) / sync["samples"])
    costs = Costs(step_fixed=cal["step_fixed_s"], step_per_seq=cal["step_per_seq_s"], ctx_cost=0.0,
                  train_per_token=cal["train_per_token_s"], prefill_per_token=0.0, push=0.0,
                  per_response=per_response)
    draw = lambda rng: (rng.randint(short // 2, short) if rng.random() < 0.9  # noqa: E731
                        else rng.randint(short + 1, 8 * short))
    return costs, Workload(w["prompts_per_step"], w["group_size"], w["slots"], 30, draw), data


RULES = ("batch", "slots", "fill", "throttle")


def _best(gpus: int, steps: int, eta: int, sync: dict, rule: str, enforce: bool = True) -> dict:
    """The best rollout share and wait/drop policy for one admission rule."""
    best: dict | None = None
    for share in (0.5, 0.625, 0.75, 0.875):
        costs, w = cluster_setup(gpus, int(gpus * share) // 8 * 8)
        for wait in (True, False) if enforce else (False,):
            stats = simulate_streaming(costs, w, steps, eta, wait_for_due=wait, admit=rule, enforce=enforce)
            ratio = stats["samples_per_s"] / sync["samples_per_s"]
            if best is None or ratio > best["ratio"]:
                best = {**stats, "rollout_share": share, "wait_for_due": wait, "admit": rule, "ratio": ratio}
    assert best is not None
    return best


def cluster_study(gpus: int, steps: int) -> dict:
    """Sync vs streaming at eta 1, 2, 4 under every admission rule, the no-bound ceiling and the latency bound."""
    sync_costs, work = cluster_setup(gpus, gpus)
    sync = simulate_sync(sync_costs, work, steps)
    cluster: dict = {"gpus": gpus, "sync": sync, "rules": {}, "latency_bound": {}}
    for eta in (1, 2, 4):
        by_rule = {rule: _best(gpus, steps, eta, sync, rule) for rule in RULES}
        cluster["rules"][f"eta{eta}"] = by_rule
        cluster[f"stream_eta{eta}"] = max(by_rule.values(), key=lambda r: r["ratio"])
        cluster["latency_bound"][f"eta{eta}"] = sync["step_s"] * eta / (32_768 * sync_costs.step_fixed)
        best = cluster[f"stream_eta{eta}"]
        progress("streaming-sim", f"cluster eta {eta}: streaming {best['ratio']:.2f}x sync (best rule {best['admit']}, "
                                  f"rollout share {best['rollout_share']})")
    cluster["no_bound_ceiling"] = _best(gpus, steps, 10**6, sync, "fill")  # admission by free slots only
    progress("streaming-sim", f"cluster no-bound ceiling: {cluster['no_bound_ceiling']['ratio']:.2f}x sync")
    cluster["admission_only"] = {}
    for eta in (1, 2):
        row = cluster["admission_only"][f"eta{eta}"] = _best(gpus, steps, eta, sync, "batch", enforce=False)
        progress("streaming-sim", f"cluster admission-only eta {eta}: {row['ratio']:.2f}x sync, "
                                  f"trained lag max {row['lag_max']}")
    return cluster


def _mode(name: str) -> tuple[int, bool, str]:
    """(eta, wait_for_due, admission) of a `thinkrl bench streaming` mode name (stream_eta2_slots_drop@process)."""
    base = name.split("@")[0]
    return int(base.split("eta")[1][0]), "_drop" not in base, "slots" if "_slots" in base else "batch"


def cpu_validation(calibration: str, steps: int) -> dict:
    """The sim with that run's costs against its measured ratios (bounds: full overlap and none)."""
    costs, w, data = cpu_setup(calibration)
    s = simulate_sync(costs, w, steps)
    cpu: dict = {"per_response_s": costs.per_response, "sync_samples_per_s_predicted": s["samples_per_s"],
                 "sync_samples_per_s_measured": data["results"]["sync"]["samples_per_s"]}
    for name in data["ratio_samples_per_s"]:
        eta, wait, admit = _mode(name)
        full = simulate_streaming(costs, w, steps, eta, wait, overlap=True, admit=admit)
        none = simulate_streaming(costs, w, steps, eta, wait, overlap=False, admit=admit)
        # the trainer's per-token cost as measured in this mode (it slows down beside the rollout)
        slowed = replace(costs, train_per_token=data["results"][name]["train_per_token_s"])
        contended = simulate_streaming(slowed, w, steps, eta, wait, overlap=False, admit=admit)
        cpu[name] = {"predicted_ratio_full_overlap": full["samples_per_s"] / s["samples_per_s"],
                     "predicted_ratio_no_overlap": none["samples_per_s"] / s["samples_per_s"],
                     "predicted_ratio_no_overlap_measured_train_cost": contended["samples_per_s"] / s["samples_per_s"],
                     "measured_ratio": data["ratio_samples_per_s"][name],
                     "measured_ratio_vs_best_sync": data.get("ratio_vs_best_sync", {}).get(name)}
        progress("streaming-sim", f"cpu validation {name}: measured {cpu[name]['measured_ratio']:.2f}x sync, predicted "
                                  f"{cpu[name]['predicted_ratio_full_overlap']:.2f}x (full overlap), "
                                  f"{cpu[name]['predicted_ratio_no_overlap']:.2f}x (none)")
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--calibration", default=None, help="JSON of `thinkrl bench streaming` to validate against")
    args = parser.parse_args()
    check_at_least(parser, args, gpus=1, steps=1)
    if args.calibration:
        load_report(parser, "--calibration", args.calibration, "streaming", key="bench")
    out: dict = {"bench": "streaming-sim", "steps": args.steps, "cluster": cluster_study(args.gpus, args.steps)}
    if args.calibration:
        out["cpu_validation"] = cpu_validation(args.calibration, args.steps)
    print(json.dumps(out))

if __name__ == "__main__":
    main()
