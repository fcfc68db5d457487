"""Tensor parallelism (Megatron-style) for the trainer, with ``torch.distributed.tensor.parallel``.

``trainer.tensor_parallel = T`` under torchrun with WORLD_SIZE = D * T ranks: a 2-D device mesh (dp, tp), tp
innermost (ranks 2k and 2k+1 are tensor-parallel peers for T = 2, as `thinkrl.tune.ParallelLayout` orders them).

- Each decoder layer is split over the T ranks of its tp group (`parallelize_layers`): q/k/v and gate/up
  projections column-wise (each rank computes H/T query heads, K/T KV heads, I/T of the MLP), o_proj and
  down_proj row-wise (a partial sum, all-reduced to the full (N, C) output). The attention module's head counts
  become the local ones, which is all the model code needs (it views q/k/v with ``num_heads``/``num_kv_heads``).
- Embeddings, norms and lm_head stay whole and replicated on the tp ranks (no sequence parallelism: the norms
  and the residual stream are computed in full on every tp rank); their gradients are identical on every tp rank,
  because the input gradient of a column-wise projection is all-reduced in backward.
- With D > 1, FSDP2 then shards every parameter over the dp dimension (`thinkrl.train.distributed.shard_module`).
- Every tp rank of a dp group takes the same micro-batches (`DataParallel.dp_rank`/`dp_size`).
- The gradient norm is computed over parameters that live on different meshes (`clip_grad_norm`), which
  ``torch.nn.utils.clip_grad_norm_`` refuses.

Not split: MoE layers and q/k norms (a per-head norm weight would get per-rank partial gradients); refused.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.parallel import ColwiseParallel, ParallelStyle, RowwiseParallel, parallelize_module

from thinkrl.model.decoder import DecoderLayer
from thinkrl.model.layers import SwiGLU
from thinkrl.train.distributed import DataParallel, init_data_parallel

# module path inside a decoder layer -> how its weight is split (HF names)
LAYER_PLAN = {"self_attn.q_proj": "colwise", "self_attn.k_proj": "colwise", "self_attn.v_proj": "colwise",
              "self_attn.o_proj": "rowwise", "mlp.gate_proj": "colwise", "mlp.up_proj": "colwise",
              "mlp.down_proj": "rowwise"}


def init_tensor_parallel(tensor_parallel: int, backend: str | None = None) -> DataParallel:
    """Join torchrun's process group and build the (dp, tp) mesh. ValueError outside torchrun or when
    ``tensor_parallel`` does not divide WORLD_SIZE."""
    if "WORLD_SIZE" not in os.environ:
        raise ValueError(f"trainer.tensor_parallel={tensor_parallel} needs torchrun "
                         f"(python -m torch.distributed.run --nproc-per-node {tensor_parallel} -m thinkrl ...)")
    world = int(os.environ["WORLD_SIZE"])
    if world % tensor_parallel:
        raise ValueError(f"trainer.tensor_parallel={tensor_parallel} does not divide WORLD_SIZE={world}")
    flat = init_data_parallel(backend)  # process group and device; its 1-D mesh is replaced by the 2-D one
    mesh = init_device_mesh(flat.device.type, (world // tensor_parallel, tensor_parallel),
                            mesh_dim_names=("dp", "tp"))
    return DataParallel(flat.rank, flat.world_size, mesh["dp"], flat.device, tp_mesh=mesh["tp"])


def check_divisible(num_heads: int, num_kv_heads: int, intermediate_size: int, tensor_parallel: int) -> None:
    """ValueError unless query heads, KV heads and the MLP width all split evenly over ``tensor_parallel``."""
    sizes = {"num_attention_heads": num_heads, "num_key_value_heads": num_kv_heads,
             "intermediate_size": intermediate_size}
    bad = [f"{name}={value}" for name, value in sizes.items() if value % tensor_parallel]
    if bad:
        raise ValueError(f"tensor_parallel={tensor_parallel} must divide {', '.join(bad)}")


def parallelize_layers(layers: Iterable[nn.Module], tp_mesh: DeviceMesh) -> None:
    """Split each decoder layer over ``tp_mesh`` in place (`LAYER_PLAN`) and set its attention's local head counts.
    ValueError for what is not split (MoE MLPs, q/k norms) or sizes ``tp_mesh.size()`` does not divide; TypeError
    for a layer that is not a `thinkrl.model.decoder.DecoderLayer`."""
    size = tp_mesh.size()
    for layer in layers:
        if not isinstance(layer, DecoderLayer):
            raise TypeError(f"parallelize_layers splits thinkrl DecoderLayers, got a {type(layer).__name__}")
        attn, mlp = layer.self_attn, layer.mlp
        if not isinstance(mlp, SwiGLU):  # the other kind of MLP: MoE
            raise ValueError("tensor parallelism of MoE layers is not implemented in the trainer")
        if attn.q_norm is not None:
            raise ValueError("tensor parallelism with q/k norms (qk_norm) is not implemented in the trainer")
        check_divisible(attn.num_heads, attn.num_kv_heads, mlp.gate_proj.out_features, size)
        plan: dict[str, ParallelStyle] = {name: ColwiseParallel() if style == "colwise" else RowwiseParallel()
                                          for name, style in LAYER_PLAN.items()}
        parallelize_module(layer, tp_mesh, plan)
        attn.num_heads, attn.num_kv_heads = attn.num_heads // size, attn.num_kv_heads // size


def _norm_of(grads: list[torch.Tensor]) -> torch.Tensor:
    """() float64 L2 norm of ``grads`` (all on one mesh, or all plain), reduced over the mesh's ranks."""
    norm = torch.nn.utils.get_total_norm(grads, 2.0)
    if isinstance(norm, DTensor):
        norm = norm.full_tensor()
    return norm.detach().double().cpu()


def clip_grad_norm(parameters: Iterable[torch.Tensor], max_norm: float) -> float:
    """``torch.nn.utils.clip_grad_norm_`` for parameters on several device meshes (tensor-parallel DTensors, FSDP2
    DTensors, replicated plain tensors): the global L2 norm of all gradients (a collective on every rank), and
    the gradients scaled by min(1, max_norm / (norm + 1e-6)) as torch does. Returns the norm before clipping."""
    groups: dict[object, list[torch.Tensor]] = {}
    for param in parameters:
        if param.grad is not None:
            mesh = param.grad.device_mesh if isinstance(param.grad, DTensor) else None
            groups.setdefault(mesh, []).append(param.grad)
    total = float(sum(_norm_of(grads) ** 2 for grads in groups.values()) ** 0.5) if groups else 0.0
    coef = max_norm / (total + 1e-6)
    if coef < 1.0:
        for grads in groups.values():
            torch._foreach_mul_(grads, coef)
    return total

