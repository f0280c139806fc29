"""Text and image encoders split into a frozen bottom and a trainable top of ``k`` blocks.

One module per family: ``hf_text`` (Hugging Face text models), ``timm_image`` (timm EfficientNet /
ViT), ``hf_image`` (Hugging Face vision models); ``base`` holds the TokenEncoder contract,
``image`` what the image families share, ``weights`` the weight files. This layer imports only the
package's base layer (errors, ...), never data / model / training.

``build_encoder`` is the one factory; it takes plain values, not a config (the data layer reads the
config and calls it).
"""

from __future__ import annotations

import os

from recbole_pmmrec.encoders.base import TokenEncoder, state_dict_sha256
from recbole_pmmrec.encoders.hf_image import HFImageEncoder
from recbole_pmmrec.encoders.hf_text import TEXT_ALIASES, TextEncoder, resolve_text_model
from recbole_pmmrec.encoders.image import IMAGE_ALIASES, ImageEncoder
from recbole_pmmrec.encoders.timm_image import EfficientNetEncoder, TimmViTEncoder
from recbole_pmmrec.encoders.weights import load_weights_file, map_lite0_keys
from recbole_pmmrec.errors import PMMRecConfigError

MODALITIES = ("text", "image")


def build_encoder(
    modality: str,
    *,
    name: str,
    train_layers: int,
    max_length: int = 32,
    image_size: int = 224,
    grid: int | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> TokenEncoder:
    """The encoder of ``modality`` (``text`` or ``image``).

    text: ``name`` is ``minilm`` or a local Hugging Face folder; uses ``max_length``.
    image: ``name`` is ``efficientnet_lite0``, ``timm:<arch>`` or a local Hugging Face folder; uses
    ``image_size``, ``grid`` and ``checkpoint``. The other modality's arguments are not used.
    """
    if modality == "text":
        return TextEncoder(name, train_layers=train_layers, max_length=max_length)
    if modality == "image":
        return ImageEncoder(name, train_layers=train_layers, image_size=image_size, grid=grid, checkpoint=checkpoint)
    raise PMMRecConfigError(f"encoder modality must be one of {list(MODALITIES)}, got {modality!r}")


__all__ = [
    "IMAGE_ALIASES",
    "TEXT_ALIASES",
    "EfficientNetEncoder",
    "HFImageEncoder",
    "ImageEncoder",
    "TextEncoder",
    "TimmViTEncoder",
    "TokenEncoder",
    "build_encoder",
    "load_weights_file",
    "map_lite0_keys",
    "resolve_text_model",
    "state_dict_sha256",
]
