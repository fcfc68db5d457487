"""thinkrl's own model-judge client (`EndpointScorer`, completions with ``logprobs=k``) against a thinkrl
server gives the label probabilities the in-process `LocalScorer` computes on the same weights."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from thinkrl.model import load_pretrained
from thinkrl.rewards.judges import EndpointScorer, LocalScorer
from thinkrl.tokenizer import load_tokenizer

TOK = load_tokenizer("builtin")
PROMPTS = ["<seed:bos>user\nIs 2 + 3 = 5?<seed:eos><seed:bos>assistant\n", "Compare A and B. Better:"]


def _labels(model: Any, prompt: str) -> list[str]:
    """Two labels the scorer can see: single tokens among the five most likely next tokens whose text
    is unique after stripping among the top twenty."""
    ids = TOK.encode(prompt)
    with torch.no_grad():
        hidden = model(torch.tensor(ids), torch.arange(len(ids)), torch.tensor([0, len(ids)])).hidden
    top = model.logits(hidden[-1:]).float().topk(20).indices[0].tolist()
    texts = [TOK.decode([i]) for i in top]
    labels = [t for t in texts[:5] if t.strip() == t and t and TOK.encode(t) == [top[texts.index(t)]]
              and [x.strip() for x in texts].count(t) == 1]
    assert len(labels) >= 2, texts
    return labels[:2]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_endpoint_scorer_on_a_thinkrl_server_equals_the_local_scorer(served: Any, prompt: str) -> None:
    model = load_pretrained(served.model_dir).eval()
    labels = _labels(model, prompt)
    want = LocalScorer(model, TOK).label_probs([prompt], labels)
    with EndpointScorer(served.url, served.model_name, top_logprobs=20) as scorer:
        got = scorer.label_probs([prompt, prompt], labels)  # two prompts in one batched request
    assert got[0] == pytest.approx(want[0], rel=1e-4) and got[1] == got[0]
    assert all(p > 0 for p in got[0])
