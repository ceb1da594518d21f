"""Memory options of `svd train`: 8-bit AdamW (bitsandbytes, which also runs on a CPU), TF32 on CUDA.

FSDP is tested under torchrun in test_train_ddp.py; peak memory at full size is benchmarks/train_memory.py.
"""

import pytest
import torch
from safetensors.torch import load_file
from tiny_train import tiny_config

from svd.train.loop import train
from svd.train.memory import use_tf32


@pytest.fixture(scope="module")
def shards(square_shards_glob):
    return square_shards_glob


def test_8bit_adamw_keeps_8bit_states_and_resumes_exactly(shards, tmp_path):
    settings = ("train.optimizer=adamw8bit", "train.checkpoint_every=2", "validation.every=0", "data.num_workers=0")
    straight = train(tiny_config(shards, "train.max_steps=4", *settings), tmp_path / "straight")
    first = train(tiny_config(shards, "train.max_steps=2", *settings), tmp_path / "resumed")
    second = train(tiny_config(shards, "train.max_steps=4", *settings), tmp_path / "resumed", resume=True)
    assert {**first.losses, **second.losses} == pytest.approx(straight.losses, rel=1e-5, abs=1e-7)
    states = load_file(straight.checkpoint / "optimizer.safetensors")
    eight_bit = [name for name, tensor in states.items() if tensor.dtype == torch.uint8]
    assert eight_bit and {name.rsplit(".", 1)[1] for name in eight_bit} == {"state1", "state2"}
    resumed = load_file(second.checkpoint / "optimizer.safetensors")
    assert all(torch.equal(resumed[name], tensor) for name, tensor in states.items())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TF32 is a CUDA setting")
def test_tf32_switches_cuda_matmuls_and_convolutions():
    use_tf32(torch.device("cuda"))
    assert torch.backends.cuda.matmul.fp32_precision == torch.backends.cudnn.conv.fp32_precision == "tf32"
