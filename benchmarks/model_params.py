"""Parameter counts of the video UNet at full size: SD 2.1 inflated into the SVD layout, and SVD-img2vid-xt.

Models are built on the meta device (no memory, no weights), from the real configs written out below
(the hub is not reachable from the development machine). The SVD paper reports 656M new temporal
parameters on a 1521M UNet.

    python benchmarks/model_params.py                     # counts only, seconds
    python benchmarks/model_params.py --check-identity    # also inflate a random full-size SD 2.1 on the CPU and
                                                          # compare it with SD per frame (about 10 GB of RAM)
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import torch
from diffusers import UNet2DConditionModel, UNetSpatioTemporalConditionModel

from svd.model.freeze import POLICIES, parameter_counts
from svd.model.inflate import inflate, is_new, plan_copy, svd_unet_config

# stabilityai/stable-diffusion-2-1, unet/config.json
SD21_UNET = {
    "act_fn": "silu",
    "attention_head_dim": [5, 10, 20, 20],
    "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False,
    "cross_attention_dim": 1024,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1,
    "dual_cross_attention": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "layers_per_block": 2,
    "mid_block_scale_factor": 1,
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "num_class_embeds": None,
    "only_cross_attention": False,
    "out_channels": 4,
    "sample_size": 96,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "upcast_attention": True,
    "use_linear_projection": True,
}

# stabilityai/stable-video-diffusion-img2vid-xt, unet/config.json
SVD_XT_UNET = {
    "addition_time_embed_dim": 256,
    "block_out_channels": [320, 640, 1280, 1280],
    "cross_attention_dim": 1024,
    "down_block_types": [
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "CrossAttnDownBlockSpatioTemporal",
        "DownBlockSpatioTemporal",
    ],
    "in_channels": 8,
    "layers_per_block": 2,
    "num_attention_heads": [5, 10, 20, 20],
    "num_frames": 25,
    "out_channels": 4,
    "projection_class_embeddings_input_dim": 768,
    "sample_size": 96,
    "transformer_layers_per_block": 1,
    "up_block_types": [
        "UpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
        "CrossAttnUpBlockSpatioTemporal",
    ],
}


def on_meta(cls, config):
    with torch.device("meta"):
        return cls(**config)


def count() -> dict:
    sd = on_meta(UNet2DConditionModel, SD21_UNET)
    inflated_config = svd_unet_config(sd.config, num_frames=25)
    inflated = on_meta(UNetSpatioTemporalConditionModel, inflated_config)
    official = on_meta(UNetSpatioTemporalConditionModel, SVD_XT_UNET)

    # Every SD weight has a same-shaped counterpart and every other weight is new: the copy plan at full size.
    sd_shapes = {name: t.shape for name, t in sd.state_dict().items()}
    svd_shapes = {name: t.shape for name, t in inflated.state_dict().items()}
    plan = plan_copy(sd_shapes, svd_shapes)
    official_shapes = {name: tuple(t.shape) for name, t in official.state_dict().items()}
    same_layout = official_shapes == {name: tuple(shape) for name, shape in svd_shapes.items()}

    sd_total = sum(p.numel() for p in sd.parameters())
    counts = parameter_counts(inflated)
    new_total = sum(p.numel() for name, p in inflated.named_parameters() if is_new(name))
    conv_in_growth = inflated.conv_in.weight.numel() - sd.conv_in.weight.numel()
    return {
        "sd21_unet": sd_total,
        "svd_unet_inflated": counts["total"],
        "svd_xt_unet_official": sum(p.numel() for p in official.parameters()),
        "same_layout_as_official": same_layout,
        "sd_tensors_copied": len(plan),
        "new_parameters": counts["total"] - sd_total,
        "new_temporal": counts["temporal"],
        "new_add_embedding": new_total - counts["temporal"],
        "new_conv_in_channels": conv_in_growth,
        **{f"trainable_{policy}": counts[f"trainable[{policy}]"] for policy in POLICIES},
    }


@torch.no_grad()
def check_identity(frames: int = 2, latent: int = 16) -> dict:
    """A random full-size SD 2.1 UNet, inflated; max |SVD(video) - SD(each frame)| in fp32 on the CPU."""
    torch.manual_seed(0)
    sd = UNet2DConditionModel(**SD21_UNET).eval()
    built = time.perf_counter()
    svd = inflate(sd, num_frames=frames).eval()
    inflated = time.perf_counter()
    x = torch.randn(1, frames, 4, latent, latent)
    context = torch.randn(1, 77, 1024)
    expected = sd(x.flatten(0, 1), 500, encoder_hidden_states=context.repeat(frames, 1, 1)).sample
    got = svd(
        torch.cat([x, torch.randn_like(x)], dim=2),
        500,
        encoder_hidden_states=context,
        added_time_ids=torch.tensor([[6.0, 127.0, 0.02]]),
    ).sample
    return {
        "identity_max_abs_diff": (got.flatten(0, 1) - expected).abs().max().item(),
        "identity_output_max_abs": expected.abs().max().item(),
        "identity_input": f"{frames} frames of {latent}x{latent} latents, t=500, random weights",
        "inflate_seconds": round(inflated - built, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check-identity", action="store_true", help="also inflate a full-size model on the CPU")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    result = count()
    if args.check_identity:
        result.update(check_identity())
    result["machine"] = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}"
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        is_count = isinstance(value, int) and not isinstance(value, bool) and value >= 100_000
        shown = f"{value / 1e6:,.1f}M ({value:,})" if is_count else value
        print(f"{key:28s} {shown}")


if __name__ == "__main__":
    main()
