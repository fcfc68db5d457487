"""Fixtures shared by the rollout tests."""

from __future__ import annotations

import pytest
import torch

from thinkrl.model import ModelConfig, build_model
from thinkrl.rollout.agent_sft import build_agent_sft_examples
from thinkrl.rollout.environments import build_environment
from thinkrl.tasks.dataset import generate_dataset
from thinkrl.tokenizer import load_tokenizer
from thinkrl.train.batching import pack_sft_examples
from thinkrl.train.common import forward_responses

CALCULATOR_CFG = ModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024)


@pytest.fixture(scope="module")
def calculator_policy():
    """(tokenizer, big_arithmetic environment, 1 problem, its SFT example, a micro model that reproduces the
    environment's transcript of it greedily: seconds of SFT). One per module: tests may push into copies of it."""
    torch.manual_seed(0)
    tok = load_tokenizer("builtin")
    env = build_environment("big_arithmetic")
    problems = generate_dataset("big_arithmetic", 1, 0, "train", {"digits": 2})
    examples = build_agent_sft_examples(tok, env, problems, seed=0)
    model = build_model(CALCULATOR_CFG, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-2)
    batch = pack_sft_examples(examples)
    for _ in range(300):
        logprobs = forward_responses(model, batch).logprobs[batch.response_mask]
        if logprobs.min() > -0.3:  # every target token is the argmax: greedy decoding reproduces the transcript
            break
        optimizer.zero_grad()
        (-logprobs.mean()).backward()
        optimizer.step()
    return tok, env, problems, examples, model.eval()
