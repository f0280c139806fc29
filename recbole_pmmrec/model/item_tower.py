"""The item tower: item ids -> item vectors, from content only. The one place that knows modalities.

```
text  states (cache) --text_encoder.backbone top k blocks--> tokens --text_encoder.proj--> (N, Lt, d)
image states (cache) --image_encoder.backbone top k blocks--> tokens --image_encoder.proj--> (N, Lv, d)
fusion(text tokens, image tokens, masks) -> item vectors (N, d)
```

``encoder_mode: cached`` (default) reads each item's frozen-bottom states from the encoder-state cache
that the dataset built; ``end_to_end`` runs raw token ids / pixels through the whole encoder each step
(for GPU users; the bottom is frozen either way).

When a modality's encoder is frozen (``*_train_layers: 0``) and that modality is pooled by a plain
mean (a single-modality model), the projection commutes with the mean, so the pooled states are computed
once and the tower costs one small matrix product per item: exact, not an approximation.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.model.fusion import MergeAttentionFusion, masked_mean

logger = logging.getLogger(__name__)

MODALITIES = ("text", "image")
IN_RAM_BYTES = 2 * 1024**3  # cached states up to this size are copied into RAM; larger stay memory-mapped


def _nbytes(states) -> int:
    return int(np.prod(states.shape)) * torch.empty(0, dtype=states.dtype).element_size()


def parse_modalities(value) -> tuple[str, ...]:
    """``modalities`` config value (list or 'text,image' string) -> validated tuple in canonical order."""
    if isinstance(value, str):
        value = [v for v in value.replace("+", ",").split(",") if v.strip()]
    chosen = {str(v).strip().lower() for v in (value or [])}
    unknown = chosen - set(MODALITIES)
    if unknown or not chosen:
        raise PMMRecConfigError(
            f"modalities={value!r}: choose a non-empty subset of {list(MODALITIES)} (e.g. [text] or [text, image])")
    return tuple(m for m in MODALITIES if m in chosen)


def build_encoder(config, modality: str):
    """The configured encoder backbone for ``modality`` (``text`` or ``image``)."""
    from recbole_pmmrec.model.encoders import ImageEncoder, TextEncoder

    if modality == "text":
        return TextEncoder(config["text_encoder"] or "minilm", train_layers=int(config["text_train_layers"] or 0),
                           max_length=int(config["text_max_length"] or 32))
    if modality == "image":
        return ImageEncoder(config["image_encoder"] or "efficientnet_lite0",
                            train_layers=int(config["image_train_layers"] or 0),
                            image_size=int(config["image_size"] or 224), grid=config["image_grid"],
                            checkpoint=config["image_checkpoint"])
    raise PMMRecConfigError(f"unknown modality {modality!r}")


class ModalityEncoder(nn.Module):
    """One modality's transfer component: the encoder backbone (its top k blocks train) + projection to d."""

    def __init__(self, backbone: nn.Module, hidden_size: int):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.out_dim, hidden_size)

    def from_states(self, states: Tensor, mask: Tensor) -> Tensor:
        """Cached boundary states (N, L, state_dim) -> projected tokens (N, L, d)."""
        return self.proj(self.backbone.encode_top(states, mask))

    def from_inputs(self, inputs) -> tuple[Tensor, Tensor]:
        """Raw inputs through the whole encoder -> (projected tokens (N, L, d), mask (N, L))."""
        tokens, mask = self.backbone(inputs)
        return self.proj(tokens), mask


@dataclass
class ItemBatch:
    """What the tower produced for a set of items (kept for the objectives that need parts of it)."""

    vectors: Tensor              # (N, d) fused item vectors
    text_vec: Tensor | None      # (N, d) pooled projected text tokens
    image_vec: Tensor | None     # (N, d) pooled projected image tokens
    has_text: Tensor             # (N,) bool
    has_image: Tensor            # (N,) bool


class ItemTower(nn.Module):
    """Item ids -> item vectors. Encoder states come from the dataset's ``item_features``."""

    def __init__(self, config, dataset):
        super().__init__()
        self.modalities = parse_modalities(config["modalities"])
        self.mode = str(config["encoder_mode"] or "cached")
        if self.mode not in ("cached", "end_to_end"):
            raise PMMRecConfigError(f"encoder_mode={self.mode!r}: use 'cached' or 'end_to_end'")
        d = config["hidden_size"]
        features = dict(dataset.item_features)  # prepared by PMMRecDataset
        for key in [k for k in features if k.endswith("_states")]:
            if hasattr(features[key], "to_tensor") and _nbytes(features[key]) <= IN_RAM_BYTES:
                features[key] = features[key].to_tensor()  # small caches: read once into RAM
        self.features = features
        self.n_items = dataset.item_num
        self.register_buffer("has_text", features["has_text"].bool(), persistent=False)
        self.register_buffer("has_image", features["has_image"].bool(), persistent=False)

        self.text_encoder = self.image_encoder = None
        for modality in self.modalities:
            backbone = build_encoder(config, modality)
            if self.mode == "cached":
                backbone.drop_bottom()  # its output is in the cache; free the memory
            setattr(self, f"{modality}_encoder", ModalityEncoder(backbone, d))
        self.fusion = MergeAttentionFusion(d, config["fusion_heads"], dropout=config["fusion_dropout"],
                                           hidden_act=config["hidden_act"], layer_norm_eps=config["layer_norm_eps"])
        # Pooled shortcut: exact when the only modality is frozen and mean-pooled.
        self.pooled = None
        if self.mode == "cached" and len(self.modalities) == 1:
            modality = self.modalities[0]
            if getattr(self, f"{modality}_encoder").backbone.train_layers == 0:
                self.pooled = modality
                self.register_buffer("pooled_states", self._pool_states(modality), persistent=False)

    # ------------------------------------------------------------------ inputs
    def _states(self, modality: str, ids: Tensor) -> tuple[Tensor, Tensor]:
        """Cached boundary states and mask of ``ids`` (on the ids' device, float32)."""
        states, mask = self.features[f"{modality}_states"], self.features[f"{modality}_mask"]
        index = ids.cpu()
        return states[index].to(ids.device, torch.float32), mask[index].to(ids.device).bool()

    def _pool_states(self, modality: str) -> Tensor:
        """Masked mean of every item's cached final states, in chunks: (n_items, out_dim)."""
        chunks = []
        for start in range(0, self.n_items, 4096):
            ids = torch.arange(start, min(start + 4096, self.n_items))
            states, mask = self._states(modality, ids)
            chunks.append(masked_mean(states, mask if modality == "text" else None))
        return torch.cat(chunks)

    def _tokens(self, modality: str, ids: Tensor) -> tuple[Tensor, Tensor]:
        encoder = getattr(self, f"{modality}_encoder")
        if self.mode == "end_to_end":
            inputs = self.features["content"].encoder_inputs(modality, ids)
            tokens, mask = encoder.from_inputs({k: v.to(ids.device) for k, v in inputs.items()})
            return tokens, mask.bool()
        states, mask = self._states(modality, ids)
        return encoder.from_states(states, mask), mask

    # ------------------------------------------------------------------ forward
    def forward(self, ids: Tensor) -> ItemBatch:
        """Encode the items ``ids`` (N,) (unique ids: each item once)."""
        has_text, has_image = self.has_text[ids], self.has_image[ids]
        if self.pooled is not None:
            encoder = getattr(self, f"{self.pooled}_encoder")
            vec = encoder.proj(self.pooled_states[ids])
            present = has_text if self.pooled == "text" else has_image
            vec = vec * present[:, None].to(vec.dtype)  # an item without the modality: zero vector
            text_vec, image_vec = (vec, None) if self.pooled == "text" else (None, vec)
            return ItemBatch(vec, text_vec, image_vec, has_text, has_image)

        text_tokens = text_mask = image_tokens = None
        if self.text_encoder is not None:
            text_tokens, text_mask = self._tokens("text", ids)
        if self.image_encoder is not None:
            image_tokens, _ = self._tokens("image", ids)
        vec = self.fusion(text_tokens, text_mask, image_tokens,
                          has_text if text_tokens is not None else None,
                          has_image if image_tokens is not None else None)
        text_vec = masked_mean(text_tokens, text_mask & has_text[:, None]) if text_tokens is not None else None
        image_vec = image_tokens.mean(dim=1) if image_tokens is not None else None
        return ItemBatch(vec, text_vec, image_vec, has_text, has_image)

    def backbones(self) -> list[nn.Module]:
        """The pretrained encoder backbones of the modalities in use."""
        return [getattr(self, f"{modality}_encoder").backbone for modality in self.modalities]

    def encoder_parameters(self):
        """Parameters of the encoder backbones' trainable blocks (their own learning rate and decay)."""
        for backbone in self.backbones():
            yield from (p for p in backbone.parameters() if p.requires_grad)
