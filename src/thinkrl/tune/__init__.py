"""AutoTuner: a memory and step-time model of parallel layouts (TP, CP, EP, FSDP, micro-batch, recompute,
offload) for RL training of a decoder, and a search that ranks the layouts that fit. Imports model configs only.
"""

from thinkrl.tune.layout import ParallelLayout, load_layout, save_layout
from thinkrl.tune.memory import MemoryBreakdown, estimate_memory
from thinkrl.tune.shapes import ModelShape, load_model_shape, read_hf_config
from thinkrl.tune.specs import CLUSTER_PRESETS, ClusterSpec, WorkloadSpec
from thinkrl.tune.timing import TimeBreakdown, estimate_time
from thinkrl.tune.trainer import TRAINER_PRESETS, TrainerSpec

__all__ = [
    "CLUSTER_PRESETS",
    "ClusterSpec",
    "MemoryBreakdown",
    "ModelShape",
    "ParallelLayout",
    "TRAINER_PRESETS",
    "TimeBreakdown",
    "TrainerSpec",
    "WorkloadSpec",
    "estimate_memory",
    "estimate_time",
    "load_layout",
    "load_model_shape",
    "read_hf_config",
    "save_layout",
]
