"""The builders of `curation.tiny_models`: seeded, randomly initialised models of the real architectures.

Each `save_tiny_*` writes what the matching stage's loader reads: an open_clip `local-dir:` folder for CLIP (with
aesthetic MLP weights of its width) and CoCa, save_pretrained folders (model, tokenizer, image processor) for
VideoBLIP and the LLM. CLIP and CoCa use open_clip's own tokenizer (its BPE vocabulary ships with the package),
the others a byte-level BPE over the small English vocabulary `WORDS`, trained here. Weights are drawn wider than
the libraries' defaults so that next-token scores are far apart: greedy captions then do not flip on rounding
noise when batches change.
"""

from __future__ import annotations

import json
from pathlib import Path

import open_clip
import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import (
    Blip2Config,
    BlipImageProcessor,
    GPT2Tokenizer,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)

from curation.captions.vblip import VideoBlipForConditionalGeneration
from curation.scores.openclip import AestheticPredictor

IMAGE_SIZE = 32
WIDTH = 32  # every tiny model's width (and CLIP's embedding width)
INIT_STD = 0.3
WORDS = (
    "a an the one two man men woman people person child dog cat bird horse car bus bike boat train street road "
    "city house room kitchen table chair bed tree trees grass water sea beach snow sky field park "
    "is are sitting standing walking running riding driving playing holding eating looking "
    "on in at of with and near next to under over front red blue green white black small large video clip shows"
).split() + [".", ","]

# ChatML, as Qwen's tokenizer renders it (without its default system message).
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def bpe_vocabulary(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary in which every word of WORDS is one token, `specials` first."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=2000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=specials,
        show_progress=False,
    )
    backend.train_from_iterator([" ".join(WORDS)] * 3 + [" " + word for word in WORDS], trainer)
    model = json.loads(backend.to_str())["model"]
    return model["vocab"], [tuple(merge) for merge in model["merges"]]


# --- CoCa -----------------------------------------------------------------------------------------------------

COCA_CONFIG = {
    "embed_dim": WIDTH,
    "vision_cfg": {
        "image_size": IMAGE_SIZE,
        "layers": 2,
        "width": WIDTH,
        "head_width": 16,
        "patch_size": 8,
        "attentional_pool": True,
        "attn_pooler_heads": 2,
        "attn_pooler_queries": 8,
        "output_tokens": True,
    },
    # open_clip's own BPE vocabulary (shipped with the package), so the tokenizer is the real one.
    "text_cfg": {
        "context_length": 24,
        "vocab_size": 49408,
        "width": WIDTH,
        "heads": 2,
        "layers": 2,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {"context_length": 24, "vocab_size": 49408, "width": WIDTH, "heads": 2, "layers": 2},
    "custom_text": True,
}


def save_tiny_coca(folder: Path, seed: int = 0) -> str:
    """A tiny CoCa as an open_clip `local-dir:` folder; returns the `caption.coca.model` value."""
    torch.manual_seed(seed)
    model = open_clip.CoCa(**{key: value for key, value in COCA_CONFIG.items() if key != "custom_text"})
    # open_clip leaves the decoder's output projection uninitialised (torch.empty) until training starts.
    torch.nn.init.normal_(model.text_decoder.text_projection, std=INIT_STD)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": COCA_CONFIG}), encoding="utf-8")
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    return f"local-dir:{folder}"


# --- VideoBLIP ------------------------------------------------------------------------------------------------


def opt_tokenizer() -> GPT2Tokenizer:
    """OPT's kind of tokenizer (GPT-2 byte-level BPE) that starts every text with "</s>", as OPT's does."""
    vocab, merges = bpe_vocabulary(["<pad>", "</s>"])
    return GPT2Tokenizer(
        vocab=vocab,
        merges=merges,
        bos_token="</s>",
        eos_token="</s>",
        unk_token="</s>",
        pad_token="<pad>",
        add_bos_token=True,
    )


def vblip_config(vocab_size: int) -> Blip2Config:
    return Blip2Config(
        vision_config={
            "hidden_size": WIDTH,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "image_size": IMAGE_SIZE,
            "patch_size": 8,
            "initializer_range": INIT_STD,
        },
        qformer_config={
            "hidden_size": WIDTH,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "encoder_hidden_size": WIDTH,
            "vocab_size": 64,
            "max_position_embeddings": 64,
            "cross_attention_frequency": 1,
            "initializer_range": INIT_STD,
        },
        # OPT, as in kpyu/video-blip-opt-2.7b-ego4d; "</s>" is both its start and end token.
        text_config={
            "model_type": "opt",
            "vocab_size": vocab_size,
            "hidden_size": WIDTH,
            "word_embed_proj_dim": WIDTH,
            "ffn_dim": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "max_position_embeddings": 128,
            "pad_token_id": 0,
            "bos_token_id": 1,
            "eos_token_id": 1,
            "init_std": INIT_STD,
        },
        num_query_tokens=4,
        initializer_range=INIT_STD,
    )


def save_tiny_vblip(folder: Path, seed: int = 0) -> str:
    """A tiny VideoBLIP (ViT, Q-Former, OPT) with its tokenizer and image processor; returns the folder."""
    tokenizer = opt_tokenizer()
    torch.manual_seed(seed)
    model = VideoBlipForConditionalGeneration(vblip_config(len(tokenizer))).eval()
    with torch.no_grad():
        model.query_tokens.normal_(std=INIT_STD)  # BLIP-2 starts them at zero: every query would be the same
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(folder)
    return str(folder)


# --- LLM ------------------------------------------------------------------------------------------------------


def llm_tokenizer() -> Qwen2Tokenizer:
    """Qwen2's tokenizer class on the small vocabulary, with a ChatML template."""
    vocab, merges = bpe_vocabulary(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def save_tiny_llm(folder: Path, seed: int = 0) -> str:
    """A tiny Qwen2-style chat model with a ChatML template; returns the folder."""
    tokenizer = llm_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=WIDTH,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=INIT_STD,
    )
    model = Qwen2ForCausalLM(config).eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


# --- CLIP and the aesthetic MLP ------------------------------------------------------------------------------

# A ViT and text transformer of 2 layers, 32 wide; the real BPE vocabulary, so open_clip's tokenizer works.
TINY_CLIP = {
    "model_cfg": {
        "embed_dim": WIDTH,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    },
}


def save_tiny_clip(folder: Path) -> dict:
    """A tiny CLIP folder (open_clip config + safetensors) and aesthetic weights as .pth and .safetensors:
    {"folder", "aesthetic" (the .pth), "state" (the aesthetic MLP's tensors)}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_CLIP))
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP["model_cfg"])
    save_file(model.state_dict(), folder / "open_clip_model.safetensors")
    torch.manual_seed(1)
    state = AestheticPredictor(WIDTH).state_dict()
    torch.save(state, folder / "aesthetic.pth")
    save_file(state, folder / "aesthetic.safetensors")
    return {"folder": folder, "aesthetic": folder / "aesthetic.pth", "state": state}
