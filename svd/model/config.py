"""`VideoModelConfig`: the `model:` section of a training config.

Kept here rather than in `curation/` because the curation side must not depend on the model side.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from curation.config_io import StrictModel

FreezePolicy = Literal["temporal", "temporal+io", "all"]
ParameterisationName = Literal["edm", "backbone"]


class EDMConfig(StrictModel):
    """Training noise levels: ln(sigma) ~ N(p_mean, p_std^2) (Karras et al. 2022, eq. 5 and table 1).

    The defaults are EDM's; the SVD paper shifts the distribution towards more noise for video and for
    high resolution, so set these per run.
    """

    p_mean: float = -1.2
    p_std: float = Field(1.2, gt=0)


class LoraConfig(StrictModel):
    """A LoRA adapter on the UNet (`svd.model.lora`): with rank > 0 only the adapter trains, every base weight
    stays frozen (`freeze` is not used), and the export is the adapter folder RUN_DIR/final/lora/."""

    rank: int = Field(0, ge=0, description="0: no LoRA")
    alpha: float | None = Field(None, gt=0, description="the adapter's output is scaled by alpha / rank; None: rank")
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[str] = Field(
        ["temporal"],
        description="groups (temporal, temporal_attention, spatial_attention, all_attention) or regular "
        "expressions matched against whole module names",
    )


class VideoModelConfig(StrictModel):
    base: str = Field(
        "stabilityai/stable-video-diffusion-img2vid-xt",
        description="an SVD checkpoint (base_kind svd) or an SD 2.x pipeline/UNet to inflate (base_kind sd); "
        "a diffusers folder or a hub id",
    )
    base_kind: Literal["svd", "sd"] = "svd"
    freeze: FreezePolicy = "temporal"
    parameterisation: ParameterisationName | None = Field(
        None, description="None: edm for an SVD checkpoint, backbone for an inflated SD"
    )
    conditioning: Literal["image", "text"] = "image"
    num_frames: int = Field(14, ge=1)
    edm: EDMConfig = EDMConfig()
    lora: LoraConfig = LoraConfig()

    def resolved_parameterisation(self) -> ParameterisationName:
        """The parameterisation to train with: the configured one, or the base's own; refuses mismatches.

        A method rather than a validator: `--set` overrides are validated one at a time, and a cross-field
        check would trip over the state between two of them.
        """
        if self.parameterisation is None:
            return "edm" if self.base_kind == "svd" else "backbone"
        if self.parameterisation == "backbone" and self.base_kind == "svd":
            raise ValueError(
                "parameterisation backbone needs an SD backbone (base_kind sd); SVD checkpoints were trained with edm"
            )
        if self.parameterisation == "edm" and self.base_kind == "sd" and self.freeze != "all":
            # A frozen SD backbone only understands the discrete timestep embedding it was trained with.
            raise ValueError(
                f"parameterisation edm with a frozen SD backbone (freeze {self.freeze}): the frozen layers only "
                "understand SD's discrete timesteps; use parameterisation backbone, or freeze all"
            )
        return self.parameterisation
