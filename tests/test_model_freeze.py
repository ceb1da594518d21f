"""Freeze policies: exactly the intended parameters train, and a step leaves the frozen ones untouched."""

import pytest
import torch
from tiny_models import CROSS_DIM, LATENT

from svd.model.freeze import apply_freeze, parameter_counts
from svd.model.inflate import inflate


@pytest.fixture
def model(sd):
    return inflate(sd)


def expected_trainable(sd, model, policy: str) -> set[str]:
    """From the SD UNet, not from the code under test: what did not come from SD is new."""
    sd_names = set(sd.state_dict())
    names = [name for name, _ in model.named_parameters()]
    new = {name for name in names if name.replace(".spatial_res_block.", ".") not in sd_names}
    temporal = {name for name in new if not name.startswith("add_embedding.")}
    io = {name for name in names if name.split(".")[0] in ("conv_in", "add_embedding")}
    return {"temporal": temporal, "temporal+io": temporal | io, "all": set(names)}[policy]


@pytest.mark.parametrize("policy", ["temporal", "temporal+io", "all"])
def test_exactly_the_intended_parameters_require_grad(sd, model, policy):
    trainable = apply_freeze(model, policy)
    expected = expected_trainable(sd, model, policy)
    assert {name for name, p in model.named_parameters() if p.requires_grad} == expected
    assert {id(p) for p in trainable} == {id(p) for name, p in model.named_parameters() if name in expected}
    counts = parameter_counts(model)
    assert counts[f"trainable[{policy}]"] == sum(p.numel() for p in trainable)
    assert counts["total"] == sum(p.numel() for p in model.parameters())


def test_temporal_policy_trains_only_the_four_temporal_parts(sd, model):
    apply_freeze(model, "temporal")
    parts = {
        next(part for part in name.split(".") if part.startswith(("temporal_", "time_")))
        for name, p in model.named_parameters()
        if p.requires_grad
    }
    assert parts == {"temporal_res_block", "temporal_transformer_blocks", "time_pos_embed", "time_mixer"}


@pytest.mark.parametrize("policy", ["temporal", "temporal+io"])
def test_one_step_leaves_every_frozen_tensor_bit_identical(model, policy):
    trainable = apply_freeze(model, policy)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # Weight decay would move frozen tensors if they were (wrongly) handed to the optimizer.
    optimizer = torch.optim.AdamW(trainable, lr=1e-2, weight_decay=0.1)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn(2, 3, 8, LATENT, LATENT, generator=generator)
    context = torch.randn(2, 5, CROSS_DIM, generator=generator)
    out = model(sample, 10, encoder_hidden_states=context, added_time_ids=torch.randn(2, 3, generator=generator))
    out.sample.square().mean().backward()
    optimizer.step()

    changed = set()
    for name, p in model.named_parameters():
        if p.requires_grad:
            changed |= {name} if not torch.equal(p, before[name]) else set()
        else:
            assert p.grad is None, name
            assert torch.equal(p, before[name]), name
    frozen_ids = {id(p) for p in model.parameters() if not p.requires_grad}
    assert not frozen_ids & set(map(id, optimizer.state))  # no optimizer state for frozen tensors
    # The zero-initialised output layers receive gradient at once, so the step did train something.
    assert any("temporal_res_block" in name and "conv2" in name for name in changed)
    assert any(".ff.net.2." in name for name in changed)
    if policy == "temporal+io":
        assert {"conv_in.weight", "add_embedding.linear_2.weight"} <= changed


def test_unknown_policy_is_refused(model):
    with pytest.raises(ValueError, match="unknown freeze policy 'spatial'"):
        apply_freeze(model, "spatial")
