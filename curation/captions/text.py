"""The three captions of a clip, how each is cleaned, and which one the clip ships with.

A captioner's raw text is cleaned (special tokens, whitespace, stuttered phrases) before it is stored. A caption
is never an empty string: when nothing is left, the caption is None and its status says why, so an empty
caption in the output always means "the model gave nothing", never a bug downstream. A captioner that is
switched off leaves its caption and status both None.

`ClipCaptions.to_record` gives a clip's caption columns (`curation.record`): each captioner's caption and
status, and the caption the clip ships with (its .txt) with its source.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from curation.config import CaptionConfig
from curation.record import CAPTION_STATUS, CAPTION_TEXT, Column

CaptionStatus = Literal["ok", "empty", "no_input"]
Source = Literal["coca", "vblip", "llm"]

OK: CaptionStatus = "ok"
EMPTY: CaptionStatus = "empty"  # the model returned nothing once cleaned
NO_INPUT: CaptionStatus = "no_input"  # the LLM merge had not both captions to merge

# Special tokens that can survive decoding: open_clip's start/end markers, <|...|> chat markers, <s>, <pad>.
_SPECIAL = re.compile(r"<\|[^<>|]*\|>|<start_of_text>|<end_of_text>|</?s>|<pad>|<unk>")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,;:!?])")
_QUOTES = "\"'`“”‘’"


@dataclass(frozen=True)
class Caption:
    """One captioner's result for one clip: cleaned text, or None with the reason in `status`."""

    text: str | None
    status: CaptionStatus

    @classmethod
    def from_generated(cls, raw: str | None) -> Caption:
        text = clean_caption(raw)
        return cls(text, OK) if text is not None else cls(None, EMPTY)


@dataclass(frozen=True)
class ClipCaptions:
    """The captions of one clip; None for a captioner that is switched off."""

    coca: Caption | None = None
    vblip: Caption | None = None
    llm: Caption | None = None

    def text(self, source: Source) -> str | None:
        caption = getattr(self, source)
        return caption.text if caption is not None else None

    def to_record(self, config: CaptionConfig, key: str) -> dict[str, str | None]:
        """The caption columns of the clip's record; `caption` is the one its .txt holds."""
        record: dict[str, str | None] = {}
        for source in CAPTION_TEXT:
            caption = getattr(self, source)
            record[CAPTION_TEXT[source].value] = caption.text if caption is not None else None
            record[CAPTION_STATUS[source].value] = caption.status if caption is not None else None
        source, text = choose_caption(self, config, key)
        record[Column.CAPTION.value] = text
        record[Column.CAPTION_SOURCE.value] = source
        return record

    @classmethod
    def from_record(cls, row: dict) -> ClipCaptions:
        """The captions a row holds (a captioner whose status is None did not run)."""
        found = {}
        for source in CAPTION_TEXT:
            status = row.get(CAPTION_STATUS[source])
            found[source] = Caption(row.get(CAPTION_TEXT[source]), status) if status is not None else None
        return cls(**found)


def choose_caption(captions: ClipCaptions, config: CaptionConfig, key: str) -> tuple[Source | None, str | None]:
    """The caption a clip ships with, by `config.ship`; (None, None) when every caption in `order` is empty."""
    available = [source for source in dict.fromkeys(config.order) if captions.text(source) is not None]
    if not available:
        return None, None
    if config.ship == "first":
        source = available[0]
    else:
        # A hash, not a random generator: the same clip gets the same caption on every run and worker.
        digest = hashlib.sha256(f"{config.seed}:{key}".encode()).digest()
        source = available[int.from_bytes(digest[:8], "big") % len(available)]
    return source, captions.text(source)


def clean_caption(raw: str | None) -> str | None:
    """Tidy a generated caption; None when nothing is left.

    Removes special tokens and decoding debris, collapses whitespace (newlines included), drops surrounding
    quotes and the space a word-piece decoder leaves before punctuation, and removes immediately repeated
    words or phrases ("a man a man a man walking" -> "a man walking"), the usual failure of greedy decoding.
    """
    if raw is None:
        return None
    text = _SPECIAL.sub(" ", raw)
    # Control characters and U+FFFD (bytes that did not form UTF-8) are decoding debris, not words.
    text = "".join(char if char.isprintable() and char != "\ufffd" else " " for char in text)
    text = " ".join(text.split())
    text = text.strip(_QUOTES + " ")
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = " ".join(remove_repeats(text.split()))
    if not any(char.isalnum() for char in text):
        return None
    return text


def remove_repeats(words: Sequence[str]) -> list[str]:
    """Drop every immediate repetition of a word or phrase, comparing words without case or punctuation."""
    words = list(words)
    keys = [_word_key(word) for word in words]
    changed = True
    while changed:
        changed = False
        for size in range(1, len(words) // 2 + 1):
            start = 0
            while start + 2 * size <= len(words):
                if keys[start : start + size] == keys[start + size : start + 2 * size] and any(
                    keys[start : start + size]
                ):
                    # Keep the second copy: it carries the punctuation that ends the phrase, if any.
                    del words[start : start + size], keys[start : start + size]
                    changed = True
                else:
                    start += 1
    return words


def _word_key(word: str) -> str:
    return "".join(char for char in word.lower() if char.isalnum())


def preflight(config: CaptionConfig) -> None:
    """Check, before any work, that each enabled captioner's model given as a local path exists.

    Loading the captioners on the driver to check them would cost minutes and gigabytes; a hub id is checked
    by the workers when they load it (and still stops the run, with the same one-line error).
    """
    from curation.errors import ModelLoadError

    if not config.enabled:
        return
    for stage, settings in (("coca", config.coca), ("vblip", config.vblip), ("llm", config.llm)):
        if not settings.enabled or (stage == "llm" and settings.backend == "http"):
            continue
        name = settings.model.removeprefix("local-dir:")
        local = settings.model.startswith("local-dir:") or name.startswith(("/", "./", "../", "~"))
        if local and not Path(name).expanduser().exists():
            raise ModelLoadError(f"caption.{stage}", settings.model, "no such folder", f"caption.{stage}.model")
