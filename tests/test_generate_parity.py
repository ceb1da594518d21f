"""Our frames against diffusers' `StableVideoDiffusionPipeline`: same tiny weights, seeds and settings (fp32)."""

import numpy as np
import pytest
import torch
from tiny_generate import components, random_image, tiny_svd_pipeline

from svd.generate.generator import VideoGenerator
from svd.generate.options import LoadOptions, SampleSettings

TOLERANCE = 1 / 255  # on frames in [0, 1]: at most one uint8 level apart

CASES = {
    "defaults": SampleSettings(steps=3, height=32, width=32),
    "every setting": SampleSettings(
        num_frames=4,
        steps=2,
        fps=12,
        motion_bucket_id=40,
        noise_aug_strength=0.1,
        min_guidance=1.5,
        max_guidance=2.5,
        height=32,
        width=48,
        decode_chunk_size=3,
    ),
    "no guidance": SampleSettings(steps=2, height=32, width=32, max_guidance=1.0),
}


@pytest.fixture(scope="module")
def pipeline():
    return tiny_svd_pipeline()


@pytest.fixture(scope="module")
def generator(pipeline):
    return VideoGenerator(components(pipeline), LoadOptions(device="cpu", dtype="fp32"))


def reference(pipeline, images, seeds, settings: SampleSettings) -> np.ndarray:
    """(B, F, H, W, 3) frames of the diffusers pipeline, one CPU generator per image."""
    generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
    return pipeline(
        images if len(images) > 1 else images[0],
        height=settings.height,
        width=settings.width,
        num_frames=settings.num_frames,
        num_inference_steps=settings.steps,
        min_guidance_scale=settings.min_guidance,
        max_guidance_scale=settings.max_guidance,
        fps=settings.fps,
        motion_bucket_id=settings.motion_bucket_id,
        noise_aug_strength=settings.noise_aug_strength,
        decode_chunk_size=settings.decode_chunk_size,
        generator=generators if len(generators) > 1 else generators[0],
        output_type="np",
    ).frames


@pytest.mark.parametrize("case", CASES)
def test_frames_equal_the_diffusers_pipeline(pipeline, generator, case):
    settings = CASES[case]
    image = random_image(size=(56, 40))
    ours = generator([image], [7], settings).frames
    theirs = reference(pipeline, [image], [7], settings)
    assert ours.shape == theirs.shape == (1, settings.num_frames or 3, settings.height, settings.width, 3)
    assert ours.std() > 0.01  # not a flat video: the comparison means something
    assert np.abs(ours - theirs).max() <= TOLERANCE


def test_a_batch_equals_the_pipeline_with_one_generator_per_image_and_single_runs(pipeline, generator):
    settings = SampleSettings(steps=2, height=32, width=32)
    images = [random_image(seed=1), random_image(seed=2)]
    batch = generator(images, [3, 4], settings).frames
    assert np.abs(batch - reference(pipeline, images, [3, 4], settings)).max() <= TOLERANCE
    single = generator(images[1:], [4], settings).frames
    assert np.abs(batch[1:] - single).max() <= 1e-4  # fp32 kernels differ with the batch size
    assert np.abs(batch[0] - batch[1]).max() > 0.05


def test_seed_changes_the_video_and_repeats_it(generator):
    settings = SampleSettings(steps=2, height=32, width=32)
    image = random_image()
    first, again, other = (generator([image], [seed], settings).frames for seed in (1, 1, 2))
    assert np.array_equal(first, again)
    assert np.abs(first - other).max() > 0.05


def test_sequential_guidance_branches_give_the_batched_result(pipeline):
    settings = SampleSettings(steps=2, height=32, width=32)
    image = random_image()
    low = VideoGenerator(components(pipeline), LoadOptions(device="cpu", forward_chunking=True))
    sequential = low([image], [5], SampleSettings(**{**settings.to_dict(), "cfg": "sequential"})).frames
    batched = VideoGenerator(components(pipeline), LoadOptions(device="cpu"))([image], [5], settings).frames
    assert np.abs(sequential - batched).max() <= 1e-4


def test_cpu_offload_and_fused_attention_keep_the_frames(pipeline):
    settings = SampleSettings(steps=2, height=32, width=32)
    image = random_image()
    plain = VideoGenerator(components(tiny_svd_pipeline()), LoadOptions(device="cpu"))([image], [5], settings).frames
    fast = VideoGenerator(
        components(tiny_svd_pipeline()), LoadOptions(device="cpu", cpu_offload=True, fuse_qkv=True, channels_last=True)
    )([image], [5], settings).frames
    assert np.abs(plain - fast).max() <= 1e-4


def test_fused_attention_runs_on_fused_weights():
    """The fusion is real: every attention layer has its fused projection and runs on it (the unfused key and value
    weights, zeroed, change nothing), with the frames of the unfused model."""
    from diffusers.models.attention_processor import Attention, FusedAttnProcessor2_0

    settings = SampleSettings(steps=2, height=32, width=32)
    image = random_image()
    plain = VideoGenerator(components(tiny_svd_pipeline()), LoadOptions(device="cpu"))([image], [5], settings).frames
    fused = VideoGenerator(components(tiny_svd_pipeline()), LoadOptions(device="cpu", fuse_qkv=True))
    layers = [module for module in fused.unet.modules() if isinstance(module, Attention)]
    assert layers and all(isinstance(layer.processor, FusedAttnProcessor2_0) for layer in layers)
    assert all(hasattr(layer, "to_qkv") or hasattr(layer, "to_kv") for layer in layers)
    for layer in layers:
        layer.to_k.weight.data.zero_()
        layer.to_v.weight.data.zero_()
    assert np.abs(fused([image], [5], settings).frames - plain).max() <= 1e-4
