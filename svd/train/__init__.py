"""`svd train`: train the temporal layers of a video UNet on the WebDataset shards `svd curate` writes.

config       `TrainConfig` (data, model, train, log, validation)
data         streaming WebDataset loader: PyAV decode, frame sampling, resize/crop, caption sampling
latents      VAE posterior moments and samples of training windows; the optional latent cache
components   the video UNet and its frozen encoders (SVD checkpoint, inflated SD, or random from configs)
loop         `train()`: the training loop, top to bottom
checkpoint   checkpoints (safetensors + state.json) and resume
ema, memory  EMA of the trainable weights; gradient checkpointing that covers the temporal blocks
validation   validation videos (mp4)
export       RUN_DIR/final in diffusers layout
"""
