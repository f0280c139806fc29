"""Hugging Face vision models from a local folder (ViTModel, CLIPVisionModel, Dinov2Model, ConvNextModel, ...).

Two output layouts, told apart by the shape of ``last_hidden_state``:

* tokens (N, L, D) (ViT, CLIP, DINOv2): all tokens incl. CLS; blocks found in ``encoder.layer(s)``
  / ``layers`` / ``vision_model.encoder.layers``, the final LayerNorm moved to the top.
* a feature map (N, C, h, w) (ConvNext, ResNet, ...): turned into tokens (N, h*w, C) (or
  grid*grid with ``grid``); blocks are the stages in ``encoder.stages``.

A split (k > 0) is checked against the unsplit model at construction and refused when it does
not reproduce it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import Tensor, nn

from recbole_pmmrec.encoders.base import (
    _check_train_layers,
    _first,
    _pool_grid,
    _pool_vit_tokens,
    _quiet_hf,
    split_advice,
)
from recbole_pmmrec.encoders.image import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITTABLE_IMAGE,
    ImageEncoder,
    is_local_dir,
    register_family,
    run_map_top,
)
from recbole_pmmrec.errors import PMMRecConfigError

# (owner path, attribute) of the block list, first match wins
_BLOCK_LISTS = (("encoder", "layer"), ("encoder", "layers"), ("", "layers"), ("", "layer"),
                ("vision_model.encoder", "layers"), ("vision_model.encoder", "layer"), ("encoder", "stages"))
_FINAL_NORMS = ("layernorm", "final_layernorm")
_PREPROCESSOR_FILE = "preprocessor_config.json"


def _to_tokens(h: Tensor, n_prefix: int, grid: int | None) -> Tensor:
    """last_hidden_state -> tokens: a map (N, C, h, w) -> (N, h*w | grid*grid, C); tokens (N, L, D) pooled ViT-style."""
    if h.dim() == 4:
        return _pool_grid(h, grid)
    return _pool_vit_tokens(h, n_prefix, grid)


def _find_blocks(model: nn.Module) -> tuple[nn.Module | None, str | None, nn.ModuleList | None]:
    """(owner, attribute, block list) of a Hugging Face vision model, or Nones."""
    for owner_path, name in _BLOCK_LISTS:
        owner = model
        for part in filter(None, owner_path.split(".")):
            owner = getattr(owner, part, None)
        if isinstance(getattr(owner, name, None), nn.ModuleList):
            return owner, name, getattr(owner, name)
    return None, None, None


def _final_norm(model: nn.Module) -> tuple[nn.Module, str, nn.LayerNorm] | None:
    """(owner, attribute, module) of the final LayerNorm: on last_hidden_state for token models
    (ViTModel.layernorm, Dinov2Model.layernorm), on the pooled output for map models (ConvNextModel.layernorm)."""
    found = None
    for owner in (model, getattr(model, "vision_model", None)):
        for name in _FINAL_NORMS:
            if owner is not None and isinstance(getattr(owner, name, None), nn.LayerNorm):
                found = (owner, name, getattr(owner, name))
    return found


class _HFVisionBottom(nn.Module):
    """A Hugging Face vision model whose top blocks were moved out: pixel values -> tokens (N, L, D)."""

    def __init__(self, model: nn.Module, grid: int | None, n_prefix: int) -> None:
        super().__init__()
        self.model = model  # state-dict names (model.*) are part of bottom_sha256: keep them
        self.grid = grid
        self.n_prefix = n_prefix

    def forward(self, x: Tensor) -> Tensor:
        h = self.model(pixel_values=x).last_hidden_state  # (N, L, D) or a map (N, C, h, w)
        return _to_tokens(h, self.n_prefix, self.grid)


@register_family
class HFImageEncoder(ImageEncoder):
    """A Hugging Face vision model from a local folder (see the module docstring)."""

    @classmethod
    def claims(cls, name: str, model: nn.Module | None) -> bool:
        return model is None and is_local_dir(name)

    def _build(self, model: nn.Module | None) -> tuple[nn.Module, tuple, tuple]:
        import transformers

        path = Path(self.name).expanduser()
        try:
            with _quiet_hf():
                config = transformers.AutoConfig.from_pretrained(str(path), local_files_only=True)
                if config.model_type == "clip":  # the vision tower of a full CLIP folder
                    model = transformers.CLIPVisionModel.from_pretrained(str(path), local_files_only=True)
                else:
                    model = transformers.AutoModel.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise PMMRecConfigError(f"cannot load a Hugging Face vision model from {path}: {exc}") from exc
        model.eval()
        self.arch = type(model).__name__
        self.load_report = {"source": str(path), "loaded": len(model.state_dict()), "missing": [],
                            "unexpected": [], "ignored": []}
        vcfg = getattr(model.config, "vision_config", model.config)
        want = getattr(vcfg, "image_size", None)
        if isinstance(want, int) and want != self.image_size:
            raise PMMRecConfigError(
                f"image encoder {path} was built for {want} px images, image_size is {self.image_size}: "
                f"set image_size: {want}"
            )
        mean, std = IMAGENET_MEAN, IMAGENET_STD
        pre = path / _PREPROCESSOR_FILE
        if pre.is_file():
            info = json.loads(pre.read_text())
            mean, std = tuple(info.get("image_mean", mean)), tuple(info.get("image_std", std))
        return model, mean, std

    def _split(self, model: nn.Module, train_layers: int) -> None:
        parent, attr, layers = _find_blocks(model)
        self.num_blocks = len(layers) if layers is not None else 0
        fix = split_advice("image_train_layers", SPLITTABLE_IMAGE)
        if layers is None and train_layers:
            raise PMMRecConfigError(
                f"image encoder {self.name} ({self.arch}) has no block list this package can split "
                f"(looked for {', '.join('.'.join(filter(None, p)) for p in _BLOCK_LISTS)}){fix}"
            )
        k = self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"image encoder {self.name}")
        x = torch.randn(2, 3, self.image_size, self.image_size)
        with torch.no_grad():
            ref = model(pixel_values=x).last_hidden_state  # tokens (N, L, D) or a map (N, C, h, w)
        self.feature_map = ref.dim() == 4
        if self.feature_map:
            self.num_prefix_tokens, self.out_dim = 0, int(ref.shape[1])
        else:
            # the patch tokens form the largest square: CLS (+ registers) come first, Swin has none
            side = math.isqrt(int(ref.shape[1]))
            self.num_prefix_tokens, self.out_dim = int(ref.shape[1]) - side * side, int(ref.shape[-1])
        self.bottom = _HFVisionBottom(model, self.grid if k == 0 else None, self.num_prefix_tokens)
        if k == 0:
            self.top = nn.ModuleList()
            return
        cut = len(layers) - k
        final = _final_norm(model)
        setattr(parent, attr, nn.ModuleList(layers[:cut]))
        if final is not None:
            # tokens: the norm moves to the top. A map model's norm acts on its pooled output only (which
            # we do not use, and which has the final width): it leaves the bottom, and the top needs none.
            setattr(final[0], final[1], nn.Identity())
        norm = [final[2]] if final is not None and not self.feature_map else []
        self.top = nn.ModuleList(list(layers[cut:]) + norm)
        self._check_split(x, _to_tokens(ref, self.num_prefix_tokens, self.grid), fix)

    def _check_split(self, x: Tensor, expect: Tensor, fix: str) -> None:
        what = f"image encoder {self.name} ({self.arch})"
        try:
            with torch.no_grad():
                out = self.encode_top(*self._bottom_forward(x))
            ok = out.shape == expect.shape and torch.allclose(out, expect, atol=1e-4)
        except Exception as exc:
            raise PMMRecConfigError(f"{what}: calling its top {self.train_layers} blocks failed ({exc!r}){fix}") from exc
        if not ok:
            raise PMMRecConfigError(
                f"{what} cannot be split into a frozen bottom and {self.train_layers} trainable blocks "
                f"(the split does not reproduce the model){fix}"
            )

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Top k blocks (+ final norm) on boundary tokens (N, L, D) -> output tokens (N, L', out_dim)."""
        if len(self.top) == 0:
            return states
        x = self._top_input(states)
        if self.feature_map:
            return run_map_top(self.top, x, self.grid)
        for unit in self.top:
            x = unit(x) if isinstance(unit, nn.LayerNorm) else _first(unit(x, None))
        return _pool_vit_tokens(x, self.num_prefix_tokens, self.grid)
