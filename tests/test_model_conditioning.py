"""Image- and text-to-video conditioning against diffusers' own pipelines (tiny components)."""

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline
from tiny_models import CROSS_DIM, SD21_SCHEDULER, frames_per_image, sd_unet, svd_pipeline, tokenizer
from transformers import CLIPTextConfig, CLIPTextModel

from svd.model.conditioning import (
    ImageConditioner,
    TextConditioner,
    added_time_ids,
    check_added_time_ids,
    unet_sample,
)
from svd.model.inflate import inflate
from svd.model.parameterisation import EDM
from svd.train.latents import posterior_moments


@pytest.fixture(scope="module")
def video_unet(sd):
    return inflate(sd).eval()


def test_image_conditioning_gives_the_unet_what_the_svd_pipeline_gives_it(video_unet):
    """One step of StableVideoDiffusionPipeline, its UNet call recorded, against our conditioning + `edm` inputs."""
    pipeline = svd_pipeline(video_unet)
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8))
    latents = torch.randn(1, 2, 4, 16, 16, generator=torch.Generator().manual_seed(5))
    calls = []
    hook = video_unet.register_forward_pre_hook(lambda _, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    try:
        pipeline(
            image,
            height=32,
            width=32,
            num_frames=2,
            num_inference_steps=2,
            min_guidance_scale=1.0,
            max_guidance_scale=1.0,  # no classifier-free guidance: one UNet call per step
            fps=7,
            motion_bucket_id=127,
            noise_aug_strength=0.02,
            generator=torch.Generator().manual_seed(0),  # its first draw is the noise augmentation
            latents=latents.clone(),
            output_type="latent",
        )
    finally:
        hook.remove()
    (sample, timestep), kwargs = calls[0]

    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    conditioner = ImageConditioner(pipeline.image_encoder, pipeline.feature_extractor, pipeline.vae)
    condition = conditioner(pixels, 0.02, generator=torch.Generator().manual_seed(0))
    sigma = pipeline.scheduler.sigmas[:1]
    noisy = latents * pipeline.scheduler.init_noise_sigma
    scaled, our_timestep = EDM().unet_inputs(noisy, sigma)

    torch.testing.assert_close(
        kwargs["encoder_hidden_states"], condition["encoder_hidden_states"], atol=1e-5, rtol=1e-4
    )
    torch.testing.assert_close(sample, unet_sample(scaled, condition["condition_latents"]), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(kwargs["added_time_ids"], added_time_ids(7, 127, 0.02, batch_size=1))
    assert our_timestep.item() == pytest.approx(float(timestep), rel=1e-5)


def test_added_time_ids_take_one_value_or_one_per_video(video_unet):
    ids = added_time_ids(torch.tensor([8.0, 25.0]), 127, torch.tensor([0.0, 0.1]), batch_size=2)
    torch.testing.assert_close(ids, torch.tensor([[7.0, 127.0, 0.0], [24.0, 127.0, 0.1]]))
    check_added_time_ids(video_unet)


def test_video_latents_are_scaled_like_the_pipeline_decodes_them():
    pipeline = svd_pipeline(inflate(sd_unet("sd2")))
    frames = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    conditioner = ImageConditioner(pipeline.image_encoder, pipeline.feature_extractor, pipeline.vae)
    latents = conditioner.video_latents(frames, generator=torch.Generator().manual_seed(0))
    posterior = pipeline.vae.encode(frames.flatten(0, 1)).latent_dist
    expected = posterior.sample(torch.Generator().manual_seed(0)) * pipeline.vae.config.scaling_factor
    assert latents.shape == (1, 2, 4, 8, 8)
    torch.testing.assert_close(latents.flatten(0, 1), expected)


def test_the_vae_encodes_outside_autocast():
    """Inside a bf16 autocast region (the training forward's), VAE encodes still run in the VAE's dtype."""
    pipeline = svd_pipeline(inflate(sd_unet("sd2")))
    frames = torch.rand(1, 2, 3, 16, 16) * 2 - 1
    conditioner = ImageConditioner(pipeline.image_encoder, pipeline.feature_extractor, pipeline.vae)
    plain = posterior_moments(pipeline.vae, frames)
    plain_latents = conditioner.condition_latents(frames[:, 0], 0.02, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        moments = posterior_moments(pipeline.vae, frames)
        latents = conditioner.condition_latents(frames[:, 0], 0.02, generator=torch.Generator().manual_seed(0))
    assert moments.dtype == latents.dtype == torch.float32
    assert torch.equal(moments, plain) and torch.equal(latents, plain_latents)


@pytest.fixture(scope="module")
def sd_text_pipeline(sd, tmp_path_factory):
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=64,
            hidden_size=CROSS_DIM,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=16,
            projection_dim=CROSS_DIM,
        )
    ).eval()
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        latent_channels=4,
    )
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer(tmp_path_factory.mktemp("tokenizer")),
        unet=sd,
        scheduler=DDIMScheduler.from_config(SD21_SCHEDULER),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def test_text_conditioning_matches_the_sd_pipeline_prompt_encoding(sd_text_pipeline):
    captions = ["a dog runs on the beach", "waves"]
    ours = TextConditioner(sd_text_pipeline.tokenizer, sd_text_pipeline.text_encoder)(captions)
    expected, _ = sd_text_pipeline.encode_prompt(captions, "cpu", 1, False)
    torch.testing.assert_close(ours["encoder_hidden_states"], expected)
    assert ours["condition_latents"] is None


def test_text_to_video_at_init_is_text_to_image_on_each_frame(sd, video_unet, sd_text_pipeline):
    """Text hidden states for cross-attention and zero image channels: the inflated model is SD per frame."""
    context = TextConditioner(sd_text_pipeline.tokenizer, sd_text_pipeline.text_encoder)(["a cat", "rain"])
    x = torch.randn(2, 3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    sample = unet_sample(x, None)
    assert sample.shape == (2, 3, 8, 8, 8) and torch.count_nonzero(sample[:, :, 4:]) == 0
    with torch.no_grad():
        expected = frames_per_image(sd, x, 300, context["encoder_hidden_states"])
        got = video_unet(
            sample, 300, encoder_hidden_states=context["encoder_hidden_states"], added_time_ids=torch.zeros(2, 3)
        )
    assert (got.sample - expected).abs().max().item() <= 1e-3
