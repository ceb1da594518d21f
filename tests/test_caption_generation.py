"""Our decoding loop (used for CoCa) against transformers' `generate` on the same tiny causal LM."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from curation.captions.generation import decode, hf_generate_kwargs, seeded
from curation.config import GenerationConfig

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lm(llm_model):
    return AutoModelForCausalLM.from_pretrained(llm_model).eval()


def step_of(lm):
    def step(tokens, items):
        return lm(tokens).logits[:, -1]

    return step


def early_end_token(lm, start: int) -> int:
    """A token greedy decoding meets after a few steps: as end token it makes hypotheses end at various lengths."""
    output = lm.generate(torch.tensor([[start]]), max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    return int(output[0, -1])


@pytest.mark.parametrize(
    "generation",
    [
        GenerationConfig(max_new_tokens=8),
        GenerationConfig(max_new_tokens=8, min_new_tokens=6),
        GenerationConfig(max_new_tokens=8, repetition_penalty=1.5),
        GenerationConfig(max_new_tokens=8, num_beams=3),
        GenerationConfig(max_new_tokens=8, num_beams=4, length_penalty=0.5, min_new_tokens=2),
    ],
    ids=["greedy", "min-tokens", "repetition", "beams", "beams-length-penalty"],
)
@pytest.mark.parametrize("start", [5, 40, 100])
def test_decode_matches_transformers_generate(lm, generation, start):
    end = early_end_token(lm, start)
    with torch.no_grad():
        expected = lm.generate(
            torch.tensor([[start]]), eos_token_id=end, pad_token_id=end, **hf_generate_kwargs(generation)
        )[0, 1:].tolist()
    expected = expected[: expected.index(end)] if end in expected else expected
    assert decode(step_of(lm), 1, start, end, generation, CPU) == [expected]


@pytest.mark.parametrize(
    "generation",
    [GenerationConfig(max_new_tokens=8), GenerationConfig(max_new_tokens=8, num_beams=3)],
    ids=["greedy", "beams"],
)
def test_decode_batch_equals_one_by_one(lm, generation):
    # Items differ by a token placed before the start token.
    prefixes = torch.tensor([[7], [60], [200]])

    def step(tokens, items):
        return lm(torch.cat([prefixes[items], tokens], dim=1)).logits[:, -1]

    end = early_end_token(lm, 5)
    batched = decode(step, 3, 5, end, generation, CPU)
    for item in range(3):

        def single(tokens, items, item=item):
            return step(tokens, torch.full_like(items, item))

        assert decode(single, 1, 5, end, generation, CPU) == [batched[item]]


def test_sampling_repeats_with_the_seed_and_changes_without(lm):
    sampled = GenerationConfig(max_new_tokens=10, do_sample=True, top_k=50, temperature=1.5, seed=3)
    first = decode(step_of(lm), 4, 5, 0, sampled, CPU)
    assert decode(step_of(lm), 4, 5, 0, sampled, CPU) == first
    other = decode(step_of(lm), 4, 5, 0, sampled.model_copy(update={"seed": 4}), CPU)
    assert other != first


def test_seeded_restores_the_global_generator():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    with seeded(7, CPU):
        inside = torch.rand(3)
    assert not torch.equal(inside, expected)
    assert torch.equal(torch.rand(3), expected)


def test_greedy_kwargs_override_the_model_sampling_defaults():
    kwargs = hf_generate_kwargs(GenerationConfig(max_new_tokens=5, repetition_penalty=1.2))
    assert kwargs["do_sample"] is False and kwargs["repetition_penalty"] == 1.2
    assert kwargs["temperature"] is None and kwargs["top_k"] is None and kwargs["top_p"] is None
    sampled = hf_generate_kwargs(GenerationConfig(do_sample=True, top_p=0.9))
    assert sampled["top_k"] == 0 and sampled["top_p"] == 0.9  # no top-k unless asked, whatever the model says
