"""Token sampling as pure tensor functions: temperature, top-k, top-p, greedy, per-row seeds."""

from __future__ import annotations

import torch


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor,
                      need_k: bool | None = None, need_p: bool | None = None) -> torch.Tensor:
    """Mask logits outside each row's top-k / nucleus with -inf.

    logits: (B, V) float; top_k: (B,) long (0 = off); top_p: (B,) float (1 = off) -> (B, V).
    need_k / need_p: whether any row has top-k > 0 / top-p < 1, when the caller knows it on the host
    (the engine does, from its Python lists); None reads it from the tensors, a host sync on CUDA.
    Passing False while a row needs it skips that row's truncation.
    """
    if need_k is None:
        need_k = bool((top_k > 0).any())
    if need_p is None:
        need_p = bool((top_p < 1).any())
    if not (need_k or need_p):
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
    vocab = logits.shape[-1]
    ranks = torch.arange(vocab, device=logits.device)
    remove = torch.zeros_like(sorted_logits, dtype=torch.bool)
    if need_k:
        k = torch.where(top_k > 0, top_k, vocab)
        remove |= ranks[None, :] >= k[:, None]
    if need_p:
        probs = sorted_logits.masked_fill(remove, float("-inf")).softmax(-1)
        mass_before = probs.cumsum(-1) - probs  # probability of strictly more likely tokens
        remove |= mass_before >= top_p[:, None]
    remove[:, 0] = False  # always keep the most likely token
    return logits.scatter(-1, order, sorted_logits.masked_fill(remove, float("-inf")))


def scaled_logprobs(logits: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
    """log_softmax(logits / temperature) per row; greedy rows (temperature 0) use the raw logits.

    logits: (B, V) float; temperature: (B,) -> (B, V) float32. The distribution whose log-probs
    `sample_tokens` reports (before top-k/top-p truncation).
    """
    greedy = temperature <= 0
    scaled = logits.float() / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    return scaled.log_softmax(-1)


def top_logprobs(logits: torch.Tensor, temperature: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k most likely tokens of each row of `scaled_logprobs` (the distribution tokens are sampled from).

    logits: (B, V) float; temperature: (B,); k in [1, V].
    Returns (ids (B, k) long, logprobs (B, k) float32), most likely first.
    """
    values, ids = scaled_logprobs(logits, temperature).topk(k, dim=-1)  # [B, k]
    return ids, values


def unpack_top_logprobs(flat: list[float], k: int, wants: list[int]) -> list[list[tuple[int, float]] | None]:
    """Host lists of `top_logprobs`: ``flat`` is ids (B*k) then log-probs (B*k) as floats; row i keeps its
    first ``wants[i]`` pairs (None when it asked for none)."""
    rows = len(wants)
    ids, values = flat[: rows * k], flat[rows * k :]
    return [[(int(ids[i * k + j]), values[i * k + j]) for j in range(min(want, k))] if want else None
            for i, want in enumerate(wants)]


def sample_tokens(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_k: torch.Tensor,
    top_p: torch.Tensor,
    generators: list[torch.Generator | None],
    default_generator: torch.Generator | None = None,
    need_k: bool | None = None,
    need_p: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row.

    logits: (B, V) float32; temperature: (B,) (0 = greedy); top_k: (B,) long; top_p: (B,) float;
    generators: per row, a seeded generator or None (rows without one share ``default_generator``);
    need_k / need_p: passed to `apply_top_k_top_p` (host-side "any row uses top-k / top-p"; None = read the tensors).
    Returns (tokens (B,) long, logprobs (B,) float32): the log-probability of each token under
    softmax(logits / temperature) before top-k/top-p truncation (raw logits for greedy rows),
    which is the distribution the trainer recomputes.
    """
    logits = logits.float()
    greedy = temperature <= 0
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature)[:, None]
    logprobs_all = scaled.log_softmax(-1)  # [B, V]
    filtered = apply_top_k_top_p(scaled, top_k, top_p, need_k, need_p)
    # Gumbel-max: argmax(logits + Gumbel noise) ~ softmax(logits); noise per row keeps seeds independent.
    uniform = torch.empty_like(filtered)
    seeded = [i for i, g in enumerate(generators) if g is not None]
    if len(seeded) < len(generators):
        uniform.uniform_(generator=default_generator)
    for i in seeded:
        uniform[i].uniform_(generator=generators[i])
    gumbel = -torch.log(-torch.log(uniform.clamp_(1e-20, 1.0 - 1e-7)))
    sampled = (filtered + gumbel).argmax(-1)
    tokens = torch.where(greedy, scaled.argmax(-1), sampled)
    return tokens, logprobs_all.gather(-1, tokens[:, None]).squeeze(-1)
