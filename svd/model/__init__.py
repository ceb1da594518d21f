"""The video model: an SVD-layout UNet (diffusers' `UNetSpatioTemporalConditionModel`) and what trains it.

One module, one job:
  config            `VideoModelConfig`: which base, which freeze policy, which noise parameterisation
  loading           read SD UNets and official SVD checkpoints (diffusers folders or hub ids), save in diffusers layout
  inflate           SD 2.x `UNet2DConditionModel` -> SVD UNet that reproduces it frame by frame at initialisation
  freeze            which parameters train: `temporal`, `temporal+io`, `all`
  parameterisation  `edm` (SVD's continuous sigma) and `backbone` (the SD scheduler's discrete timesteps)
  conditioning      image-to-video (CLIP embedding, noise-augmented VAE latent, added_time_ids) and text-to-video

Modules import torch and diffusers; import them where they are needed, not at CLI start-up.
"""
