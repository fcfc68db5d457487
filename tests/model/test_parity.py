"""thinkrl's decoder reproduces transformers' logits for every supported architecture."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from thinkrl.model import CachedStep, load_pretrained

TOL = 1e-4


def _hf_logits(hf_model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return hf_model(torch.tensor([ids])).logits[0]


def _packed_logits(model, seqs: list[list[int]]) -> list[torch.Tensor]:
    ids = torch.tensor([t for s in seqs for t in s])
    pos = torch.cat([torch.arange(len(s)) for s in seqs])
    cu = torch.tensor([0] + [len(s) for s in seqs]).cumsum(0)
    with torch.no_grad():
        logits = model.logits(model(ids, pos, cu).hidden)
    return list(logits.split([len(s) for s in seqs]))


def test_architecture_flags_read_from_config(hf_checkpoint):
    arch, folder, hf_model = hf_checkpoint
    model = load_pretrained(folder)
    assert model.config.architecture == arch
    saved = set(load_file(folder / "model.safetensors"))  # transformers' checkpoint names (one tensor per expert)
    assert set(model.state_dict()) - {"lm_head.weight"} == saved - {"lm_head.weight"}
    assert ("lm_head.weight" in saved) == (not model.config.tie_word_embeddings)


def test_full_forward_matches_transformers(hf_checkpoint):
    _, folder, hf_model = hf_checkpoint
    model = load_pretrained(folder)
    ids = torch.randint(0, 97, (40,), generator=torch.Generator().manual_seed(1)).tolist()
    ours = _packed_logits(model, [ids])[0]
    assert (ours - _hf_logits(hf_model, ids)).abs().max() < TOL


def test_packed_forward_matches_separate_forwards(hf_checkpoint):
    _, folder, hf_model = hf_checkpoint
    model = load_pretrained(folder)
    gen = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 97, (n,), generator=gen).tolist() for n in (7, 31, 1, 18)]
    for ours, ids in zip(_packed_logits(model, seqs), seqs, strict=True):
        assert (ours - _hf_logits(hf_model, ids)).abs().max() < TOL


def test_cached_step_by_step_decoding_matches_transformers(hf_checkpoint):
    """Prefill two prompts of different lengths into slots 1 and 0, then decode one token at a time."""
    _, folder, hf_model = hf_checkpoint
    model = load_pretrained(folder)
    gen = torch.Generator().manual_seed(3)
    full = [torch.randint(0, 97, (n,), generator=gen).tolist() for n in (20, 26)]
    prompt_lens = [5, 11]
    cache = model.allocate_cache(num_slots=2, max_seq_len=64)
    slots = torch.tensor([1, 0])
    # Prefill (padded to the longest prompt).
    q = max(prompt_lens)
    ids = torch.tensor([s[:q] + [0] * (q - len(s[:q])) for s in full])
    step = CachedStep(slots, torch.zeros(2, dtype=torch.long), torch.tensor(prompt_lens), context_len=q)
    hidden = model.forward_cached(ids, step, cache)
    got = [model.logits(hidden[i, n - 1]) for i, n in enumerate(prompt_lens)]
    lengths = list(prompt_lens)
    refs = [_hf_logits(hf_model, s) for s in full]
    for i in range(2):
        assert (got[i] - refs[i][lengths[i] - 1]).abs().max() < TOL
    # Decode: sequence 1 runs 15 more steps, sequence 0 stops after 9.
    for t in range(15):
        active = [i for i in range(2) if lengths[i] < len(full[i]) and (i == 1 or t < 9)]
        rows = torch.tensor(active)
        step = CachedStep(slots[rows], torch.tensor([lengths[i] for i in active]),
                          torch.ones(len(active), dtype=torch.long),
                          context_len=max(lengths[i] for i in active) + 1)
        new = torch.tensor([[full[i][lengths[i]]] for i in active])
        logits = model.logits(model.forward_cached(new, step, cache)[:, 0])
        for row, i in enumerate(active):
            assert (logits[row] - refs[i][lengths[i]]).abs().max() < TOL, (i, t)
            lengths[i] += 1


def test_thinkrl_save_is_loadable_by_transformers(hf_checkpoint, tmp_path):
    """Round trip: transformers -> thinkrl -> save -> transformers gives the same logits."""
    import transformers

    arch, folder, hf_model = hf_checkpoint
    from thinkrl.model import save_pretrained

    save_pretrained(load_pretrained(folder), tmp_path)
    saved_arch = json.loads((tmp_path / "config.json").read_text())["architectures"]
    assert saved_arch == [arch]
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).float().eval()
    assert type(reloaded).__name__ == arch
    ids = list(range(3, 30))
    assert (_hf_logits(reloaded, ids) - _hf_logits(hf_model, ids)).abs().max() < TOL


def test_thinkrl_moe_checkpoint_runs_in_transformers_with_the_same_logits(tmp_path):
    """thinkrl's own MoE (random router and experts) saved, loaded by transformers' Qwen3-MoE: same logits."""
    import pytest

    transformers = pytest.importorskip("transformers")
    from thinkrl.model import ModelConfig, build_model, save_pretrained

    config = ModelConfig(architecture="Qwen3ForCausalLM", vocab_size=97, hidden_size=64, intermediate_size=96,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                         num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32)
    model = build_model(config, seed=5)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                p.mul_(20.0)  # decisive routing (see conftest)
    save_pretrained(model, tmp_path)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).float().eval()
    assert type(hf_model).__name__ == "Qwen3MoeForCausalLM"
    ids = torch.randint(0, 97, (33,), generator=torch.Generator().manual_seed(6)).tolist()
    assert (_packed_logits(model, [ids])[0] - _hf_logits(hf_model, ids)).abs().max() < TOL
