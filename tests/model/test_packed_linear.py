"""A prepacked linear (`pack_linears`) keeps ``nn.Linear``'s calling convention."""

from __future__ import annotations

import torch
from torch import nn

from thinkrl.model import pack_linears, packed_linears_unsupported_reason, unpack_linears


def test_a_packed_linear_takes_its_input_by_keyword_as_nn_linear_does():
    model = nn.Sequential(nn.Linear(16, 8))
    # an fp32 CPU model packs on every torch build the project installs (x86 and ARM CPU wheels ship oneDNN)
    assert packed_linears_unsupported_reason(model) is None
    linear = model[0]
    x = torch.randn(3, 16)
    with torch.no_grad():
        want = linear(input=x)
        assert pack_linears(model) == 1
        torch.testing.assert_close(linear(input=x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(linear(x), want, rtol=1e-5, atol=1e-5)
    unpack_linears(model)
    assert "forward" not in linear.__dict__
