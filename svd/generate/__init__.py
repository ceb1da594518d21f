"""`svd generate`: image-to-video (official SVD checkpoints or a `svd train` export), text-to-video (a `svd train`
text-to-video export), longer videos in segments and video-to-video.

One module, one job:
  options         what a run asks for: loading (device, precision, offload, LoRA), sampling settings, presets
  schedule        the noise levels of a run, from the checkpoint's scheduler config, per sampler
  denoiser        D(x; sigma): the UNet with its conditioning and classifier-free guidance
  sampler         euler (with churn), heun, dpmpp_2m, ddim: each a loop over the schedule calling the denoiser
  generator       `VideoGenerator`: loads the image-to-video parts once, encodes images, samples, decodes
  text_generator  `TextVideoGenerator`: the same for a text-to-video export, from prompts
  segments        longer videos: segment after segment, each conditioned on the one before, joins cross-faded
  output          mp4 / gif / PNG-folder writers; every file appears complete or not at all
  run             the command's work: find inputs, plan outputs, batch, write, summarise

With the Euler sampler, frames equal diffusers' `StableVideoDiffusionPipeline`'s for the same weights, seed and
settings (tests/test_generate_parity.py); each other sampler equals the pipeline with the matching diffusers
scheduler (tests/test_generate_samplers.py).
"""
