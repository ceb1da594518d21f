"""Caption cleaning, the empty marker, and the choice of the caption a clip ships with."""

import pytest

from curation.captions.text import EMPTY, NO_INPUT, OK, Caption, ClipCaptions, choose_caption, clean_caption
from curation.config import CaptionConfig


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a man walking", "a man walking"),
        ("  a   man\n walking \t", "a man walking"),
        ("<start_of_text>a cat on a couch . <end_of_text>", "a cat on a couch."),
        ("a man a man a man walking", "a man walking"),
        ("a dog, a dog, a dog running on the beach", "a dog running on the beach"),
        ("A man a man walking", "a man walking"),
        ("the the the the", "the"),
        ("a red car and a blue car", "a red car and a blue car"),  # repeated words, but not back to back
        ('"A sunny beach."', "A sunny beach."),
        ("a bird<|im_end|>", "a bird"),
        ("</s>a boat\x00 on the sea\ufffd", "a boat on the sea"),
        ("", None),
        ("   \n ", None),
        ("<|endoftext|>", None),
        (" . , ", None),
        (None, None),
    ],
)
def test_clean_caption(raw, expected):
    assert clean_caption(raw) == expected


def test_a_model_that_returns_nothing_is_recorded_as_such():
    assert Caption.from_generated("  <end_of_text> ") == Caption(None, EMPTY)
    assert Caption.from_generated("a cat") == Caption("a cat", OK)


def test_first_policy_takes_the_first_caption_that_is_not_empty():
    config = CaptionConfig()  # order: llm, vblip, coca
    full = ClipCaptions(Caption("coca", OK), Caption("vblip", OK), Caption("llm", OK))
    assert choose_caption(full, config, "k") == ("llm", "llm")
    no_llm = ClipCaptions(Caption("coca", OK), Caption("vblip", OK), Caption(None, NO_INPUT))
    assert choose_caption(no_llm, config, "k") == ("vblip", "vblip")
    llm_off = ClipCaptions(Caption("coca", OK), Caption(None, EMPTY), None)
    assert choose_caption(llm_off, config, "k") == ("coca", "coca")
    assert choose_caption(ClipCaptions(), config, "k") == (None, None)
    coca_first = CaptionConfig(order=["coca", "llm"])
    assert choose_caption(full, coca_first, "k") == ("coca", "coca")


def test_random_policy_is_stable_per_clip_and_covers_all_captions():
    config = CaptionConfig(ship="random", seed=5)
    full = ClipCaptions(Caption("coca", OK), Caption("vblip", OK), Caption("llm", OK))
    chosen = {key: choose_caption(full, config, key)[0] for key in (f"clip-{index}" for index in range(60))}
    assert set(chosen.values()) == {"coca", "vblip", "llm"}
    assert all(choose_caption(full, config, key)[0] == source for key, source in chosen.items())
    reseeded = CaptionConfig(ship="random", seed=6)
    assert any(choose_caption(full, reseeded, key)[0] != source for key, source in chosen.items())
    only_coca = ClipCaptions(Caption("coca", OK), Caption(None, EMPTY), Caption(None, NO_INPUT))
    assert {choose_caption(only_coca, config, key)[0] for key in chosen} == {"coca"}


def test_record_keeps_all_three_captions_and_their_status():
    captions = ClipCaptions(Caption("a cat", OK), Caption(None, EMPTY), None)
    assert captions.to_record(CaptionConfig(), "k") == {
        "caption_coca": "a cat",
        "caption_coca_status": "ok",
        "caption_vblip": None,
        "caption_vblip_status": "empty",
        "caption_llm": None,
        "caption_llm_status": None,
        "caption": "a cat",
        "caption_source": "coca",
    }
