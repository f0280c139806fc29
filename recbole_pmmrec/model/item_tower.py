"""The item tower: item ids -> item vectors, from content only. The one place that knows modalities.

```
text  states (cache) --text_encoder.backbone top k blocks--> tokens --text_encoder.proj--> (N, Lt, d)
image states (cache) --image_encoder.backbone top k blocks--> tokens --image_encoder.proj--> (N, Lv, d)
fusion(text tokens, image tokens, masks) -> item vectors (N, d)
```

``encoder_mode: cached`` (default) reads each item's frozen-bottom states from the encoder-state cache
that the dataset built; ``end_to_end`` runs raw token ids / pixels through the whole encoder each step
(for GPU users; the bottom is frozen either way).

A single-modality item is the projection of the masked mean of its encoder tokens (with the default linear
projection that equals the mean of the projected tokens, the authors' definition). When that encoder is
frozen (``*_train_layers: 0``), the mean is computed once for the whole catalogue and the tower costs one
small projection per item: exact, not an approximation.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.model.fusion import MergeAttentionFusion, masked_mean, pool_token_groups

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


def two_modality_setting(key: str, value, off, modalities, why: str):
    """``value`` of a setting that acts only with text and image; with one modality it is ``off`` instead, and
    the log says so (naming the key and ``why``)."""
    if value != off and len(modalities) < 2:
        logging.getLogger(__name__).warning("%s=%s ignored: %s, and modalities=%s has one", key, value, why,
                                            list(modalities))
        return off
    return value


def projection(in_dim: int, hidden_size: int, kind: str) -> nn.Module:
    """``linear`` (the authors' code) or ``mlp`` ([ours]: Linear-GELU-Linear, more capacity for frozen encoders)."""
    if kind == "linear":
        return nn.Linear(in_dim, hidden_size)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, 4 * hidden_size), nn.GELU(), nn.Linear(4 * hidden_size, hidden_size))
    raise PMMRecConfigError(f"projection={kind!r}: use 'linear' or 'mlp'")


class ModalityEncoder(nn.Module):
    """One modality's transfer component: the encoder backbone (its top k blocks train) + projection to d."""

    def __init__(self, backbone: nn.Module, hidden_size: int, kind: str = "linear"):
        super().__init__()
        self.backbone = backbone
        self.proj = projection(backbone.out_dim, hidden_size, kind)



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
        self.bottom_chunk = max(1, int(config["cache_batch_size"] or 64))  # end_to_end: items per frozen-bottom pass
        self.chunk_items = max(1, int(config["item_chunk_size"] or 128))  # items per item-tower pass (see forward)
        if self.mode not in ("cached", "end_to_end"):
            raise PMMRecConfigError(f"encoder_mode={self.mode!r}: use 'cached' or 'end_to_end'")
        d = config["hidden_size"]
        features = dict(dataset.item_features)  # prepared by PMMRecDataset
        missing = [m for m in self.modalities if m not in features["encoders"]]
        if missing:
            raise PMMRecConfigError(f"modalities {missing} were not prepared by the dataset (it has "
                                    f"{sorted(features['encoders'])}); build the dataset with the same modalities")
        for key in [k for k in features if k.endswith("_states")]:
            if hasattr(features[key], "to_tensor") and _nbytes(features[key]) <= IN_RAM_BYTES:
                features[key] = features[key].to_tensor()  # small caches: read once into RAM
        self.features = features
        self.n_items = dataset.item_num
        self.register_buffer("has_text", features["has_text"].bool(), persistent=False)
        self.register_buffer("has_image", features["has_image"].bool(), persistent=False)

        self.text_encoder = self.image_encoder = None
        for modality in self.modalities:
            # The dataset's own encoder, whose bottom made the cached states: a copy per model, so that the
            # states and the top blocks always come from the same weights (even randomly initialised ones).
            backbone = copy.deepcopy(features["encoders"][modality])
            if self.mode == "cached":
                backbone.drop_bottom()  # its output is in the cache; free the memory
            setattr(self, f"{modality}_encoder", ModalityEncoder(backbone, d, str(config["projection"] or "linear")))
        p = float(config["item_feature_dropout"] or 0.0)
        if not 0.0 <= p < 1.0:
            raise PMMRecConfigError(f"item_feature_dropout={p}: must be in [0, 1)")
        # Dropout on the encoder's output features, before the projection (training only): the tower cannot
        # rely on any few feature dimensions to tell an item apart, so its vectors follow the content more
        # smoothly (a regulariser aimed at items never seen in training; 0 = off).
        self.feature_dropout = nn.Dropout(p)
        # With two modalities, the chance (per item and training step) that the fusion sees only one of an item's
        # two modalities, text or image at random: the fused vector must then follow each modality on its own,
        # not only their combination (aimed at items never seen in training; 0 = off; NICL still sees both).
        q = float(config["modality_dropout"] or 0.0)
        if not 0.0 <= q < 1.0:
            raise PMMRecConfigError(f"modality_dropout={q}: must be in [0, 1)")
        self.modality_dropout = two_modality_setting("modality_dropout", q, 0.0, self.modalities,
                                                     "it drops one of two modalities")
        # With two modalities: add the mean of the item's projected text tokens to the fused vector, a text path
        # around the fusion layer (a new item then keeps what a text-only tower would give it).
        self.text_skip = two_modality_setting("text_skip", bool(config["text_skip"]), False, self.modalities,
                                              "it goes around the fusion of two modalities")
        # The same for the image: add the mean of the item's projected image tokens (zero for an item without an
        # image). With both skips the item vector is a late fusion, text + image, plus the fusion layer's output.
        self.image_skip = two_modality_setting("image_skip", bool(config["image_skip"]), False, self.modalities,
                                               "it goes around the fusion of two modalities")
        # With two modalities, the text tokens that enter the fusion are averaged in at most this many runs of
        # consecutive tokens (~ = every token): the fusion layer's cost grows with its token count.
        groups = config["text_tokens"]
        if groups is not None and (not isinstance(groups, int) or isinstance(groups, bool) or groups < 1):
            raise PMMRecConfigError(f"text_tokens={groups!r}: use a positive int, or ~ to keep every text token")
        self.text_groups = groups
        self.fusion = MergeAttentionFusion(d, config["fusion_heads"], dropout=config["fusion_dropout"],
                                           hidden_act=config["hidden_act"], layer_norm_eps=config["layer_norm_eps"])
        self._images = self._preload_images()
        # Frozen text in a two-modality model: its pooled groups are fixed, computed once for the catalogue when the
        # cached states are in RAM (the same tokens as pooling each batch, without re-reading 32 tokens per item).
        self.text_grouped = None
        if (self.mode == "cached" and len(self.modalities) == 2 and self.text_groups is not None
                and self.text_encoder.backbone.train_layers == 0 and isinstance(features["text_states"], Tensor)):
            self.text_grouped = self._group_text()
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
        mask = mask[index].bool()
        if modality == "text":  # drop the padding columns no item of this batch uses
            width = max(int(mask.sum(dim=1).max()), 1)
            mask = mask[:, :width]
            states = states[index][:, :width] if isinstance(states, Tensor) else states[index][:, :width]
        else:
            states = states[index]
        return states.to(ids.device, torch.float32), mask.to(ids.device)

    def _pool_states(self, modality: str) -> Tensor:
        """Masked mean of every item's cached final states, in chunks: (n_items, out_dim)."""
        chunks = []
        for start in range(0, self.n_items, 4096):
            ids = torch.arange(start, min(start + 4096, self.n_items))
            states, mask = self._states(modality, ids)
            chunks.append(masked_mean(states, mask if modality == "text" else None))
        return torch.cat(chunks)

    def _group_text(self) -> tuple[Tensor, Tensor, Tensor]:
        """Every item's pooled text groups (tokens, mask, sizes), from the cached states, in chunks."""
        tokens = mask = sizes = None
        g = min(self.text_groups, self.features["text_mask"].shape[1])  # at most one group per token
        for start in range(0, self.n_items, 4096):
            ids = torch.arange(start, min(start + 4096, self.n_items))
            t, m, c = pool_token_groups(*self._states("text", ids), self.text_groups)
            if tokens is None:  # a chunk of short texts may have fewer than g columns: the rest stay padding
                tokens = t.new_zeros(self.n_items, g, t.shape[2])
                mask, sizes = m.new_zeros(self.n_items, g), c.new_zeros(self.n_items, g)
            width = t.shape[1]
            tokens[ids, :width], mask[ids, :width], sizes[ids, :width] = t, m, c
        return tokens, mask, sizes

    def _text_groups(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The text tokens that enter the fusion (N, G, D), their mask and the number of encoder tokens each
        stands for: pooled groups when ``text_tokens`` is set, else every token (size 1)."""
        if self.text_grouped is not None:
            tokens, mask, sizes = (t[ids.cpu()].to(ids.device) for t in self.text_grouped)
            width = max(int(mask.sum(dim=1).max()), 1)  # drop the columns no item of this batch uses
            return tokens[:, :width], mask[:, :width], sizes[:, :width]
        tokens, mask = self._encoder_tokens("text", ids)
        if self.text_groups is not None and tokens.shape[1] > self.text_groups:
            return pool_token_groups(tokens, mask, self.text_groups)
        return tokens, mask, mask.to(tokens.dtype)

    def _inputs(self, modality: str, ids: Tensor):
        """Raw encoder inputs of ``ids`` for end_to_end mode: (token ids, mask) or uint8 images."""
        content = self.features["content"]
        if modality == "text":
            input_ids, mask = content.text_batch(ids.cpu())
            return input_ids.to(ids.device), mask.to(ids.device)
        if self._images is None:
            images, _ = content.image_batch(ids.cpu())
        else:
            images = self._images[ids.cpu()]
        return images.to(ids.device)

    def _preload_images(self) -> Tensor | None:
        """end_to_end with images: decode every image once into RAM when that fits (else per batch)."""
        if self.mode != "end_to_end" or "image" not in self.modalities:
            return None
        content = self.features["content"]
        size = content.image_size
        if self.n_items * 3 * size * size > IN_RAM_BYTES:
            return None
        ids = torch.arange(self.n_items)
        return torch.cat([content.image_batch(chunk)[0] for chunk in ids.split(256)])

    def _encoder_tokens(self, modality: str, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The backbone's output tokens (N, L, out_dim) and mask (N, L): cached bottom + top k blocks, or the
        whole encoder on raw inputs (end_to_end)."""
        backbone = getattr(self, f"{modality}_encoder").backbone
        if self.mode == "end_to_end":
            # The frozen bottom (no grad) in chunks of cache_batch_size items: one pass over a batch's ~1,000
            # unique posters at once held ~14 GB of EfficientNet activations; chunked, the peak is a chunk's.
            states, mask = self._bottom_in_chunks(backbone, self._inputs(modality, ids))
            return backbone.encode_top(states, mask), mask.bool()
        states, mask = self._states(modality, ids)
        return backbone.encode_top(states, mask), mask

    def _bottom_in_chunks(self, backbone, inputs) -> tuple[Tensor, Tensor]:
        """``backbone.encode_bottom`` (no grad) over ``bottom_chunk`` items at a time, concatenated."""
        n = int(inputs[0].shape[0] if isinstance(inputs, tuple) else inputs.shape[0])
        step = self.bottom_chunk
        if n <= step:
            return backbone.encode_bottom(inputs)
        parts = [backbone.encode_bottom(tuple(x[i:i + step] for x in inputs) if isinstance(inputs, tuple)
                                        else inputs[i:i + step]) for i in range(0, n, step)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    # ------------------------------------------------------------------ forward
    def forward(self, ids: Tensor) -> ItemBatch:
        """Encode the items ``ids`` (N,) (unique ids: each item once), ``chunk_items`` items at a time.

        One modality: the projection of the masked mean of the encoder's tokens (for a linear projection this
        is the mean of the projected tokens, the authors' definition). Two: projected tokens -> fusion.

        Every item is encoded independently of the others, so the chunks give exactly the vectors of one pass.
        They are much faster on a CPU: one pass over ~1,000 items x ~40 tokens makes each element-wise step of
        the fusion layer (GELU, residual adds, layer norms) allocate and touch a fresh 40-70 MB tensor, and
        those page faults, not the arithmetic, dominated the tower's time (``bench/eval_cost.py``).
        """
        if self.pooled is not None or ids.numel() <= self.chunk_items:  # pooled: one small projection anyway
            return self._encode(ids)
        parts = [self._encode(chunk) for chunk in ids.split(self.chunk_items)]
        return ItemBatch(*(None if getattr(parts[0], f) is None else torch.cat([getattr(p, f) for p in parts])
                           for f in ("vectors", "text_vec", "image_vec", "has_text", "has_image")))

    def _encode(self, ids: Tensor) -> ItemBatch:
        """:meth:`forward` on one chunk of item ids."""
        has_text, has_image = self.has_text[ids], self.has_image[ids]
        present = {"text": has_text, "image": has_image}
        if len(self.modalities) == 1:
            modality = self.modalities[0]
            if self.pooled is not None:
                pooled = self.pooled_states[ids]
            else:
                tokens, mask = self._encoder_tokens(modality, ids)
                pooled = masked_mean(tokens, mask if modality == "text" else None)
            vec = getattr(self, f"{modality}_encoder").proj(self.feature_dropout(pooled))
            vec = vec * present[modality][:, None].to(vec.dtype)  # an item without the modality: zero vector
            return ItemBatch(vec, vec if modality == "text" else None, vec if modality == "image" else None,
                             has_text, has_image)

        text_tokens, text_mask, weights = self._text_groups(ids)
        image_tokens, _ = self._encoder_tokens("image", ids)
        text_tokens = self.text_encoder.proj(self.feature_dropout(text_tokens))  # (N, Lt, d)
        image_tokens = self.image_encoder.proj(self.feature_dropout(image_tokens))  # (N, Lv, d)
        fuse_text, fuse_image = has_text, has_image
        if self.training and self.modality_dropout > 0:
            drop = has_text & has_image & (torch.rand(ids.shape, device=ids.device) < self.modality_dropout)
            drop_text = drop & (torch.rand(ids.shape, device=ids.device) < 0.5)
            fuse_text, fuse_image = has_text & ~drop_text, has_image & ~(drop & ~drop_text)
        vec = self.fusion(text_tokens, text_mask, image_tokens, fuse_text, fuse_image)
        # NICL's text vector: the mean over the item's text tokens (pooled groups weighted by their size)
        weights = weights * has_text[:, None].to(weights.dtype)
        text_vec = (text_tokens * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1)
        image_vec = image_tokens.mean(dim=1)
        if self.text_skip:
            vec = vec + text_vec
        if self.image_skip:
            vec = vec + image_vec * has_image[:, None].to(image_vec.dtype)
        return ItemBatch(vec, text_vec, image_vec, has_text, has_image)

    def backbones(self) -> list[nn.Module]:
        """The pretrained encoder backbones of the modalities in use."""
        return [getattr(self, f"{modality}_encoder").backbone for modality in self.modalities]

    def encoder_parameters(self):
        """Parameters of the encoder backbones' trainable blocks (their own learning rate and decay)."""
        for backbone in self.backbones():
            yield from (p for p in backbone.parameters() if p.requires_grad)
