"""How fast are the three captioners? Clips per second at batch sizes 1, 8 and 32, at full model size.

Models are the real architectures with random weights, built on the target device and never downloaded (speed
does not depend on the weights): open_clip `coca_ViT-L-14`; VideoBLIP with the configuration of
`kpyu/video-blip-opt-2.7b-ego4d` (EVA ViT-g, Q-Former, OPT-2.7B; written out below); the LLM with the
configuration of `Qwen/Qwen2.5-1.5B-Instruct`. Generation uses the settings of `configs/curation/svd.yaml`
(CoCa 6 beams, VideoBLIP 4 beams, LLM greedy), with every caption forced to its full `max_new_tokens`
(`min_new_tokens = max_new_tokens`): random weights would otherwise stop at random lengths, so these are
worst-case figures. Frames are random 448 x 252 RGB images (what the decoder hands over at `max_side` 448);
the LLM merges two captions of realistic length. Tokenizers are word-level stand-ins of the real vocabulary
sizes (no hub): prompt lengths are close to the real ones, but not identical.

Timed: the captioner call on a batch (preprocessing, encoding, decoding, text cleaning), best of `--repeats`
after one warm-up batch. Needs a GPU for meaningful figures; `--tiny` runs tiny models on the CPU (captions of
`TINY_NEW_TOKENS` tokens) to check that the script works.

    python benchmarks/caption_speed.py                        # full size on the GPU
    python benchmarks/caption_speed.py --tiny --batch-sizes 1 8   # smoke test on the CPU
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    Blip2Config,
    BlipImageProcessor,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from curation.captions.coca import CocaCaptioner
from curation.captions.llm import LocalLlm
from curation.captions.vblip import VBlipCaptioner, VideoBlipForConditionalGeneration
from curation.config import CaptionConfig, GenerationConfig
from curation.devices import resolve_device, resolve_dtype

# Salesforce/blip2-opt-2.7b's config.json (kpyu/video-blip-opt-2.7b-ego4d was fine-tuned from it).
VBLIP_FULL = {
    "vision_config": {
        "hidden_size": 1408,
        "intermediate_size": 6144,
        "num_hidden_layers": 39,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "layer_norm_eps": 1e-6,
        "qkv_bias": True,
    },
    "qformer_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "encoder_hidden_size": 1408,
        "cross_attention_frequency": 2,
        "vocab_size": 30522,
        "max_position_embeddings": 512,
    },
    "text_config": {
        "model_type": "opt",
        "hidden_size": 2560,
        "ffn_dim": 10240,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "vocab_size": 50272,
        "max_position_embeddings": 2048,
        "word_embed_proj_dim": 2560,
        "do_layer_norm_before": True,
        "pad_token_id": 1,
        "bos_token_id": 2,
        "eos_token_id": 2,
    },
    "num_query_tokens": 32,
}
VBLIP_TINY = {
    "vision_config": {**VBLIP_FULL["vision_config"], "hidden_size": 32, "intermediate_size": 64},
    "qformer_config": {**VBLIP_FULL["qformer_config"], "hidden_size": 32, "intermediate_size": 64},
    "text_config": {**VBLIP_FULL["text_config"], "hidden_size": 32, "ffn_dim": 64, "word_embed_proj_dim": 32},
    "num_query_tokens": 4,
}
for _section in ("vision_config", "qformer_config", "text_config"):
    VBLIP_TINY[_section] |= {"num_hidden_layers": 2, "num_attention_heads": 4}
VBLIP_TINY["qformer_config"] |= {"encoder_hidden_size": 32}
VBLIP_TINY["vision_config"] |= {"image_size": 32, "patch_size": 8}

# Qwen/Qwen2.5-1.5B-Instruct's config.json.
LLM_FULL = {
    "vocab_size": 151936,
    "hidden_size": 1536,
    "intermediate_size": 8960,
    "num_hidden_layers": 28,
    "num_attention_heads": 12,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
LLM_TINY = LLM_FULL | {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}

COCA_TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8,
                   "attentional_pool": True, "attn_pooler_heads": 2, "output_tokens": True},
    "text_cfg": {"context_length": 76, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2,
                 "embed_cls": True, "output_tokens": True},
    "multimodal_cfg": {"context_length": 76, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    "custom_text": True,
}  # fmt: skip

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CAPTIONS = (
    "a man in a blue jacket walking his dog along a busy city street",
    "a person walks a dog down the sidewalk past parked cars and shops",
)


def stand_in_tokenizer(vocab_size: int, specials: list[str], **roles: str) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with the model's vocabulary size: words and punctuation are single tokens."""
    names = specials + [f"w{index}" for index in range(vocab_size - len(specials))]
    backend = Tokenizer(models.WordLevel({name: index for index, name in enumerate(names)}, unk_token=names[-1]))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.add_special_tokens(specials)
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token=names[-1], **roles)


TINY_NEW_TOKENS = 6  # --tiny: the same decoding, fewer steps (tiny models only check the code)


def fixed_length(generation: GenerationConfig, tiny: bool = False) -> GenerationConfig:
    """Every caption forced to its full length (`TINY_NEW_TOKENS` with `tiny`)."""
    length = min(generation.max_new_tokens, TINY_NEW_TOKENS) if tiny else generation.max_new_tokens
    return generation.model_copy(update={"min_new_tokens": length, "max_new_tokens": length})


def build_coca(tiny: bool, device: str) -> CocaCaptioner:
    config = CaptionConfig().coca
    config = config.model_copy(
        update={"pretrained": None, "device": device, "generation": fixed_length(config.generation, tiny)}
    )
    if tiny:
        folder = Path(tempfile.mkdtemp(prefix="coca-tiny-"))
        (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": COCA_TINY}), encoding="utf-8")
        config = config.model_copy(update={"model": f"local-dir:{folder}"})
    captioner = CocaCaptioner.load(config)  # no weights: random initialisation
    # open_clip leaves the decoder's output projection as torch.empty (garbage, NaN in half precision).
    projection = captioner.model.text_decoder.text_projection
    torch.nn.init.normal_(projection, std=projection.shape[0] ** -0.5)
    return captioner


def build_vblip(tiny: bool, device_name: str) -> VBlipCaptioner:
    config = CaptionConfig().vblip
    device = resolve_device(device_name)
    dtype = resolve_dtype(device, config.precision)
    blip2 = Blip2Config(**(VBLIP_TINY if tiny else VBLIP_FULL))
    with torch.device(device):
        model = VideoBlipForConditionalGeneration(blip2).to(dtype)
    tokenizer = stand_in_tokenizer(blip2.text_config.vocab_size, ["<s>", "<pad>", "</s>"], pad_token="<pad>")
    size = blip2.vision_config.image_size
    processor = BlipImageProcessor(size={"height": size, "width": size})
    generation = fixed_length(config.generation, tiny)
    return VBlipCaptioner(model, processor, tokenizer, config.num_frames, "", generation, 1024, device)


def build_llm(tiny: bool, device_name: str) -> LocalLlm:
    config = CaptionConfig().llm
    device = resolve_device(device_name)
    dtype = resolve_dtype(device, config.precision)
    tokenizer = stand_in_tokenizer(
        LLM_FULL["vocab_size"],
        ["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    qwen = Qwen2Config(**(LLM_TINY if tiny else LLM_FULL), eos_token_id=2, pad_token_id=0)
    with torch.device(device):
        model = Qwen2ForCausalLM(qwen).to(dtype)
    config = config.model_copy(update={"generation": fixed_length(config.generation, tiny), "batch_size": 1024})
    return LocalLlm(config, model, tokenizer, device)


def workload(name: str, captioner, batch: int) -> Callable[[], object]:
    """One captioner call on `batch` clips: middle frames for CoCa, 8-frame clips for VideoBLIP, caption pairs."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (252, 448, 3), dtype=np.uint8) for _ in range(batch)]
    if name == "coca":
        return lambda: captioner(frames)
    if name == "vblip":
        clip = [rng.integers(0, 256, (252, 448, 3), dtype=np.uint8) for _ in range(captioner.num_frames)]
        return lambda: captioner([clip] * batch)
    return lambda: captioner([CAPTIONS[0]] * batch, [CAPTIONS[1]] * batch)


def best_time(run: Callable[[], object], repeats: int) -> float:
    run()  # warm-up: kernels, allocator, caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


BUILDERS = {"coca": build_coca, "vblip": build_vblip, "llm": build_llm}


def measure(name: str, *, tiny: bool, device_name: str, batch_sizes: list[int], repeats: int) -> Iterator[dict]:
    """Build one captioner, then one row per batch size as each is measured; the model is freed at the end."""
    device = resolve_device(device_name)
    captioner = BUILDERS[name](tiny, device_name)
    try:
        for batch in batch_sizes:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            seconds = best_time(workload(name, captioner, batch), repeats)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            yield {
                "captioner": name,
                "batch": batch,
                "seconds": seconds,
                "clips_per_s": batch / seconds,
                "peak_gib": peak,
            }
    finally:
        captioner = None  # free the model before building the next one
        if device.type == "cuda":
            torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny models (to check the script on a CPU)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["coca", "vblip", "llm"], nargs="+", default=["coca", "vblip", "llm"])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()

    device = resolve_device(args.device)
    rows = []
    for name in args.only:
        for row in measure(
            name, tiny=args.tiny, device_name=args.device, batch_sizes=args.batch_sizes, repeats=args.repeats
        ):
            rows.append(row)
            print(f"{name} batch {row['batch']}: {row['clips_per_s']:.2f} clips/s", flush=True)

    machine = (
        torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'unknown'})"
    )
    if args.json:
        print(json.dumps({"machine": machine, "tiny": args.tiny, "rows": rows}, indent=2))
        return
    print(f"\n{machine}, {'tiny' if args.tiny else 'full-size'} models, dtype {resolve_dtype(device)}\n")
    print("| captioner | batch | clips/s | s per batch | peak GPU memory |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        peak = f"{row['peak_gib']:.1f} GiB" if row["peak_gib"] is not None else "-"
        print(f"| {row['captioner']} | {row['batch']} | {row['clips_per_s']:.2f} | {row['seconds']:.3f} | {peak} |")


if __name__ == "__main__":
    main()
