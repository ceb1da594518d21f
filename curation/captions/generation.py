"""What the three captioners share: decoding by our config, seeding, and the one "cannot load" error.

VideoBLIP and the LLM decode with transformers' `generate`, fed by `hf_generate_kwargs`. CoCa decodes with
`decode` here: open_clip's own `CoCa.generate` cannot run with transformers 5 (its beam search imports
`BeamSearchScorer`, which transformers 5 removed, and open_clip then refuses to generate at all), so the
same three modes are implemented over the model's next-token logits, with transformers' logits
processors doing the masking and warping exactly as `generate` would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from transformers import (
    LogitsProcessorList,
    MinNewTokensLengthLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from curation.config import GenerationConfig
from curation.errors import ModelLoadError

# step(tokens, items): next-token logits (rows, vocab) for `tokens` (rows, length), row r continuing the
# sequence of batch item items[r] (beams repeat items; the model's per-item inputs are indexed by it).
StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def hf_generate_kwargs(generation: GenerationConfig) -> dict:
    """Our settings as transformers `generate` arguments, every one explicit so the model's own
    generation_config.json (e.g. sampling defaults of an instruct model) never changes the captions."""
    kwargs = {
        "max_new_tokens": generation.max_new_tokens,
        "min_new_tokens": generation.min_new_tokens,
        "num_beams": generation.num_beams,
        "length_penalty": generation.length_penalty,
        "repetition_penalty": generation.repetition_penalty,
        "do_sample": generation.do_sample,
    }
    if generation.do_sample:
        kwargs |= {
            "temperature": generation.temperature,
            "top_k": generation.top_k or 0,
            "top_p": generation.top_p or 1.0,
        }
    else:
        kwargs |= {"temperature": None, "top_k": None, "top_p": None}
    return kwargs


@contextmanager
def seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed torch for one generate call and restore the global generators afterwards."""
    devices = (
        [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    )
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


@contextmanager
def loading(stage: str, model: str, config_key: str) -> Iterator[None]:
    """Turn any failure to load a model into the one-line ModelLoadError (stage, model, how to fix)."""
    try:
        yield
    except ModelLoadError:
        raise
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as error:
        lines = str(error).strip().splitlines() or [type(error).__name__]
        raise ModelLoadError(stage, model, lines[0].rstrip("."), config_key) from error


def logits_processors(generation: GenerationConfig, end_token: int, device: torch.device) -> LogitsProcessorList:
    """The processors `generate` would build for these settings (prompt = the one start token)."""
    processors = LogitsProcessorList()
    if generation.min_new_tokens:
        processors.append(MinNewTokensLengthLogitsProcessor(1, generation.min_new_tokens, end_token, device=device))
    if generation.repetition_penalty != 1.0:
        processors.append(RepetitionPenaltyLogitsProcessor(generation.repetition_penalty))
    if generation.do_sample:
        if generation.temperature != 1.0:
            processors.append(TemperatureLogitsWarper(generation.temperature))
        if generation.top_k is not None:
            processors.append(TopKLogitsWarper(generation.top_k))
        if generation.top_p is not None and generation.top_p < 1.0:
            processors.append(TopPLogitsWarper(generation.top_p))
    return processors


@torch.no_grad()
def decode(
    step: StepFn,
    batch_size: int,
    start_token: int,
    end_token: int,
    generation: GenerationConfig,
    device: torch.device,
) -> list[list[int]]:
    """Generated token ids per batch item, without the start token and cut before the end token.

    Greedy, sampling or beam search by `generation`. Each item is decoded independently of the others in
    the batch (finished items leave the batch), so batching changes nothing but the speed.
    """
    if generation.num_beams > 1:
        return _beam_search(step, batch_size, start_token, end_token, generation, device)
    processors = logits_processors(generation, end_token, device)
    generator = torch.Generator(device=device).manual_seed(generation.seed) if generation.do_sample else None
    tokens = torch.full((batch_size, 1), start_token, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(generation.max_new_tokens):
        active = (~done).nonzero().squeeze(1)
        scores = processors(tokens[active], step(tokens[active], active).float())
        if generator is not None:
            chosen = torch.multinomial(scores.softmax(-1), 1, generator=generator).squeeze(1)
        else:
            chosen = scores.argmax(-1)
        column = torch.full((batch_size,), end_token, dtype=torch.long, device=device)
        column[active] = chosen
        tokens = torch.cat([tokens, column[:, None]], dim=1)
        done |= column == end_token
        if bool(done.all()):
            break
    return [_until_end(row[1:].tolist(), end_token) for row in tokens]


def _beam_search(
    step: StepFn,
    batch_size: int,
    start_token: int,
    end_token: int,
    generation: GenerationConfig,
    device: torch.device,
) -> list[list[int]]:
    """Beam search as transformers 5 does it (`early_stopping=False`): 2k candidates per step; those among
    the best k that end (with the end token, or at `max_new_tokens`) become hypotheses scored by
    log-probability / generated length ** length_penalty; an item is done once it holds k hypotheses and its
    best open beam, scored the same way, cannot beat the worst of them."""
    beams = generation.num_beams
    penalty = generation.length_penalty
    processors = logits_processors(generation, end_token, device)
    items = torch.arange(batch_size, device=device).repeat_interleave(beams)
    tokens = torch.full((batch_size * beams, 1), start_token, dtype=torch.long, device=device)
    # Only the first beam of each item is open at the start, or the k beams would be k copies.
    scores = torch.full((batch_size, beams), -math.inf, device=device)
    scores[:, 0] = 0.0
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch_size)]
    done = [False] * batch_size
    for length in range(1, generation.max_new_tokens + 1):
        last = length == generation.max_new_tokens
        live = [item for item in range(batch_size) if not done[item]]
        rows = torch.tensor([item * beams + beam for item in live for beam in range(beams)], device=device)
        logprobs = processors(tokens[rows], step(tokens[rows], items[rows]).float().log_softmax(-1))
        vocab = logprobs.shape[-1]
        totals = (scores[live].unsqueeze(-1) + logprobs.view(len(live), beams, vocab)).view(len(live), -1)
        best, flat = totals.topk(2 * beams, dim=1)
        parents = torch.arange(batch_size * beams, device=device)
        next_tokens = torch.full((batch_size * beams,), end_token, dtype=torch.long, device=device)
        for item, item_best, item_flat in zip(live, best.tolist(), flat.tolist(), strict=True):
            kept: list[tuple[float, int, int]] = []
            for rank, (score, index) in enumerate(zip(item_best, item_flat, strict=True)):
                parent, token = divmod(index, vocab)
                if token == end_token or last:
                    if rank < beams and score > -math.inf:
                        sequence = tokens[item * beams + parent, 1:].tolist() + ([] if token == end_token else [token])
                        finished[item].append((score / length**penalty, sequence))
                elif len(kept) < beams:
                    kept.append((score, parent, token))
            finished[item] = sorted(finished[item], key=lambda hypothesis: -hypothesis[0])[:beams]
            for beam, (score, parent, token) in enumerate(kept):
                parents[item * beams + beam] = item * beams + parent
                next_tokens[item * beams + beam] = token
                scores[item, beam] = score
            open_best = kept[0][0] / length**penalty if kept else -math.inf
            done[item] = last or (len(finished[item]) >= beams and finished[item][-1][0] >= open_best)
        tokens = torch.cat([tokens[parents], next_tokens[:, None]], dim=1)
        if all(done):
            break
    return [max(hypotheses, key=lambda hypothesis: hypothesis[0])[1] if hypotheses else [] for hypotheses in finished]


def _until_end(tokens: list[int], end_token: int) -> list[int]:
    return tokens[: tokens.index(end_token)] if end_token in tokens else tokens


def check_frame(frame: np.ndarray) -> np.ndarray:
    """A frame as the captioners take it: H x W x 3, RGB, uint8."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        shape = getattr(frame, "shape", None)
        dtype = getattr(frame, "dtype", type(frame).__name__)
        raise ValueError(f"expected an H x W x 3 uint8 RGB frame, got shape {shape} of {dtype}")
    return frame
