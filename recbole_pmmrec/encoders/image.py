"""What every image encoder shares; ``ImageEncoder(name, ...)`` picks the family class.

Families (one class each):

* ``EfficientNetEncoder`` (timm_image.py): the alias ``efficientnet_lite0`` and timm's
  EfficientNet-like architectures; the final feature map (N, C, h, w) becomes tokens (N, h*w, C).
* ``TimmViTEncoder`` (timm_image.py): timm ViT / DeiT; all tokens incl. CLS.
* ``HFImageEncoder`` (hf_image.py): a local Hugging Face vision model folder (ViTModel,
  CLIPVisionModel, Dinov2Model, ConvNextModel, ...).

Decisions worth knowing:

* Every BatchNorm layer stays in eval mode (running statistics frozen) even while the top blocks
  train: the cached bottom states were computed with those statistics, and recommendation batches
  of a few hundred items are too small and too correlated to re-estimate them. Their affine
  weights still train.
* Inputs: uint8 images (N, 3, H, W) are scaled to [0, 1] and normalised with
  ``preprocess['mean'/'std']``; float inputs are taken as already normalised.
* ``grid``: adaptive average pooling of the final map to grid x grid tokens (ViT-like: patch tokens
  only, CLS kept). With k > 0 the pooling happens in the top, so it is not part of the identity.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from torch import Tensor, nn

from recbole_pmmrec.encoders.base import TokenEncoder, _first, _freeze, _pool_grid, _tokens_to_map
from recbole_pmmrec.encoders.weights import _load_into, load_weights_file
from recbole_pmmrec.errors import PMMRecConfigError

logger = logging.getLogger(__name__)

IMAGE_ALIASES = ("efficientnet_lite0",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPLITTABLE_IMAGE = (
    "a timm EfficientNet (efficientnet_lite0, timm:efficientnet_b0) or ViT/DeiT (timm:vit_tiny_patch16_224), "
    "or a Hugging Face ViTModel, CLIPVisionModel, Dinov2Model or ConvNextModel folder"
)

_FAMILIES: list[type[ImageEncoder]] = []  # registered by the family modules; the package imports them all


def register_family(cls: type[ImageEncoder]) -> type[ImageEncoder]:
    """Class decorator: ``ImageEncoder(name, ...)`` builds ``cls`` where ``cls.claims(name, model)``."""
    _FAMILIES.append(cls)
    return cls


def image_family(name: str, model: nn.Module | None) -> type[ImageEncoder]:
    """The family class for ``name`` (alias, ``timm:<arch>``, HF folder) or for a given timm ``model``."""
    for cls in _FAMILIES:
        if cls.claims(name, model):
            return cls
    import timm

    if model is not None or timm.is_model(name.removeprefix("timm:")):
        what = type(model).__name__ if model is not None else "a timm architecture of another family"
        raise PMMRecConfigError(
            f"image encoder {name} ({what}) is not an EfficientNet-like or ViT-like timm model; use one of "
            f"these: {SPLITTABLE_IMAGE}"
        )
    raise PMMRecConfigError(
        f"image_encoder {name!r} is neither an alias ({', '.join(IMAGE_ALIASES)}), a timm architecture name "
        "(e.g. timm:efficientnet_lite0, timm:vit_tiny_patch16_224) nor a local Hugging Face model folder"
    )


def is_local_dir(name: str) -> bool:
    """Whether ``name`` is a folder (a Hugging Face model saved with save_pretrained)."""
    return Path(os.path.expanduser(name)).is_dir()


def square_side(n_tokens: int) -> tuple[int, int]:
    """(h, w) of the square feature map that was flattened into ``n_tokens`` tokens."""
    side = int(round(n_tokens ** 0.5))
    return side, side


def run_map_top(units: nn.ModuleList, x: Tensor, grid: int | None) -> Tensor:
    """Top units of a convolutional net on boundary tokens (N, h*w, C) of a square map -> (N, L', C')."""
    x = _tokens_to_map(x, square_side(x.shape[1]))  # (N, C, h, w)
    for unit in units:
        x = _first(unit(x))
    return _pool_grid(x, grid)


class ImageEncoder(TokenEncoder):
    """Base of the image families: ``ImageEncoder(name, ...)`` returns the family's subclass.

    ``name``: the alias ``efficientnet_lite0`` (pretrained), a timm architecture (``timm:<arch>`` or a
    bare timm name; random weights unless ``checkpoint``), or a local Hugging Face folder.
    ``checkpoint``: a local weights file loaded strictly into the model (classifier keys ignored).
    ``model``: an already built timm model (tests, custom weights).

    A family registers itself (``register_family``) and implements ``claims``, ``_build`` (returns
    model, mean, std; sets ``arch``), ``_split`` (sets bottom, top, num_blocks, train_layers, out_dim)
    and ``encode_top``.
    """

    arch: str

    def __new__(cls, name: str = "efficientnet_lite0", *args, model: nn.Module | None = None, **kwargs):
        if cls is ImageEncoder:
            cls = image_family(str(name), model)
        return super().__new__(cls)

    @classmethod
    def claims(cls, name: str, model: nn.Module | None) -> bool:
        """Whether this family builds ``name`` (or the given ``model``)."""
        raise NotImplementedError

    def __init__(
        self,
        name: str = "efficientnet_lite0",
        train_layers: int = 0,
        image_size: int = 224,
        grid: int | None = None,
        checkpoint: str | os.PathLike | None = None,
        model: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(image_size, int) or image_size < 16:
            raise PMMRecConfigError(f"image_size must be an int >= 16, got {image_size!r}")
        if grid is not None and (not isinstance(grid, int) or grid < 1):
            raise PMMRecConfigError(f"image_grid must be a positive int or None, got {grid!r}")
        self.name, self.image_size, self.grid = str(name), image_size, grid
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        self.load_report: dict | None = None

        model, mean, std = self._build(model)
        if self.checkpoint is not None:
            self.load_report = _load_into(model, load_weights_file(self.checkpoint), self.checkpoint)
        if self.load_report is None:
            logger.warning("image encoder %s: random initial weights (no checkpoint given)", self.name)
        self.preprocess = {"size": image_size, "mean": tuple(mean), "std": tuple(std),
                           "resize": "shorter side to size, then center crop"}
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

        self._split(model, train_layers)
        _freeze(self.bottom)
        self._set_bn_eval()
        with torch.no_grad():
            probe = self.bottom(torch.zeros(1, 3, image_size, image_size))  # (1, L, C)
        self.state_dim = int(probe.shape[-1])
        self.num_state_tokens = int(probe.shape[1])

    # -- families implement --------------------------------------------------------------------
    def _build(self, model: nn.Module | None) -> tuple[nn.Module, tuple, tuple]:
        raise NotImplementedError

    def _split(self, model: nn.Module, train_layers: int) -> None:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    def _set_bn_eval(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self._set_bn_eval()  # BatchNorm statistics stay frozen: see the module docstring
        return self

    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (N, 3, H, W) -> normalised float; float input is returned as is."""
        if images.dtype == torch.uint8:
            images = (images.to(self._mean.dtype) / 255.0 - self._mean) / self._std
        return images

    def _bottom_forward(self, inputs) -> tuple[Tensor, Tensor]:
        x = self.normalize(inputs).to(self._param_dtype())
        states = self.bottom(x)  # (N, L, C)
        return states, torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)

    def _top_input(self, states: Tensor) -> Tensor:
        return states.to(next(self.top.parameters()).dtype)

    def _identity_fields(self) -> dict:
        return {
            "kind": "image",
            "encoder": self.name,
            "arch": self.arch,
            "checkpoint": Path(self.checkpoint).name if self.checkpoint else None,  # weights: bottom_sha256
            "num_blocks": self.num_blocks,
            "boundary_block": self.num_blocks - self.train_layers,
            "image_size": self.image_size,
            "grid": self.grid if self.train_layers == 0 else None,
            "mean": list(self.preprocess["mean"]),
            "std": list(self.preprocess["std"]),
            "state_dim": self.state_dim,
        }
