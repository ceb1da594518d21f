"""`svd generate`: image-to-video with an SVD-layout model (official SVD checkpoints or a `svd train` export).

One module, one job:
  options    what a run asks for: loading (device, precision, offload) and sampling settings, `--low-memory`
  sampler    the Euler sampler over the checkpoint scheduler's sigmas (Karras for SVD), batched CFG,
             `edm` or `backbone` parameterisation
  generator  `VideoGenerator`: loads the model parts once, encodes images, samples, decodes in chunks
  output     mp4 / gif / PNG-folder writers; every file appears complete or not at all
  run        the command's work: find images, plan outputs, batch, write, summarise

Frames equal diffusers' `StableVideoDiffusionPipeline`'s for the same weights, seed and settings
(tests/test_generate_parity.py).
"""
