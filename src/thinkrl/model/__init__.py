"""Decoder models (Llama family, optional MoE) and Hugging Face checkpoint I/O. Imports torch only."""

from thinkrl.model.config import SUPPORTED_ARCHITECTURES, ModelConfig
from thinkrl.model.decoder import CausalLM, DecoderOutput
from thinkrl.model.hf_io import build_model, load_pretrained, resolve_device, resolve_dtype, save_pretrained
from thinkrl.model.kv_cache import CachedStep, KVCache
from thinkrl.model.lm_head import response_logprobs
from thinkrl.model.packed_linear import (
    PACK_MIN_WEIGHTS,
    pack_linears,
    packed_linears_unsupported_reason,
    unpack_linears,
)
from thinkrl.model.pointwise import compile_pointwise, uncompile_pointwise

__all__ = [
    "SUPPORTED_ARCHITECTURES",
    "CachedStep",
    "CausalLM",
    "DecoderOutput",
    "KVCache",
    "ModelConfig",
    "build_model",
    "compile_pointwise",
    "load_pretrained",
    "PACK_MIN_WEIGHTS",
    "pack_linears",
    "packed_linears_unsupported_reason",
    "resolve_device",
    "resolve_dtype",
    "response_logprobs",
    "save_pretrained",
    "uncompile_pointwise",
    "unpack_linears",
]
