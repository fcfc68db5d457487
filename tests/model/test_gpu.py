"""CUDA checks (run with `pytest -m gpu` on a machine with a GPU)."""

from __future__ import annotations

import pytest
import torch

from thinkrl.engine import LLMEngine, SamplingParams
from thinkrl.model import ModelConfig, build_model
from thinkrl.tokenizer import load_tokenizer

pytestmark = pytest.mark.gpu
CFG = ModelConfig(vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, attention_bias=True)


@pytest.fixture(autouse=True)
def _need_cuda():
    if not torch.cuda.is_available():
        pytest.fail("gpu tests need CUDA (deselect them with -m 'not gpu')")


def _packed_inputs(lengths, device):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 512, (sum(lengths),), generator=gen).to(device)
    pos = torch.cat([torch.arange(n) for n in lengths]).to(device)
    cu = torch.tensor([0, *lengths]).cumsum(0).to(device)
    return ids, pos, cu


def test_cuda_fp32_matches_cpu_and_bf16_is_close():
    cpu = build_model(CFG, seed=0).eval()
    gpu = build_model(CFG, seed=0, device="cuda").eval()
    ids, pos, cu = _packed_inputs([17, 5, 40], "cpu")
    with torch.no_grad():
        ref = cpu.logits(cpu(ids, pos, cu).hidden)
        got = gpu.logits(gpu(ids.cuda(), pos.cuda(), cu.cuda()).hidden).cpu()
        bf16 = build_model(CFG, seed=0, device="cuda", dtype="bfloat16").eval()  # varlen flash path
        low = bf16.logits(bf16(ids.cuda(), pos.cuda(), cu.cuda()).hidden).float().cpu()
    assert (got - ref).abs().max() < 1e-3
    assert (low - ref).abs().max() < 0.15


def test_cuda_engine_greedy_matches_cpu():
    tok = load_tokenizer("builtin")
    params = SamplingParams(max_new_tokens=20, temperature=0, stop_token_ids=())
    prompts = [[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16]]
    outs = []
    for device in ("cpu", "cuda"):
        model = build_model(CFG, seed=0, device=device).eval()
        outs.append([t.response_ids for t in LLMEngine(model, tok, num_slots=2, max_seq_len=64)
                     .generate_from_ids(prompts, params)])
    assert outs[0] == outs[1]


def test_bf16_training_step_reduces_loss():
    model = build_model(CFG, seed=0, device="cuda", dtype="bfloat16").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids, pos, cu = _packed_inputs([30, 30, 30], "cuda")
    losses = []
    for _ in range(8):
        logits = model.logits(model(ids, pos, cu).hidden).float()
        loss = torch.nn.functional.cross_entropy(logits[:-1], ids[1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
