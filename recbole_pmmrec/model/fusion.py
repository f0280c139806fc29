"""Merge-attention fusion: one vector per item from its projected text and image tokens.

The item tower projects each modality's token states to ``d`` and hands them here. With both
modalities, the text and image tokens of an item are concatenated and go through one BERT-style
post-LN Transformer layer (self-attention + FFN, RecBole's ``TransformerLayer``); the item vector is
the mean of the layer's outputs over the item's valid tokens. With one modality there is no
attention layer: text-only is the masked mean of the text tokens, image-only the mean of the image
tokens (the authors' code).

Valid tokens of an item are its non-padding text tokens if it has text, and all its image tokens if
it has an image. Invalid tokens are masked out as attention *keys* (an additive mask of the dtype's
most negative value, so their softmax weight is exactly 0) and left out of the mean, so they never
influence the item vector. An item that lacks a modality therefore gets exactly what the layer gives
on its other modality alone. An item with no valid token at all (the padding row 0) gets a zero
vector.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from recbole.model.layers import FeedForward, TransformerLayer
from torch import Tensor, nn

from recbole_pmmrec.data.pooling import masked_mean
from recbole_pmmrec.errors import PMMRecConfigError

_ACTIVATIONS = ("gelu", "relu", "swish", "tanh", "sigmoid")  # what RecBole's FeedForward knows


def fused_gelu(module: nn.Module) -> nn.Module:
    """Give every RecBole ``FeedForward`` in ``module`` that uses ``gelu`` torch's one-kernel ``F.gelu``.

    RecBole writes GELU as ``x * 0.5 * (1 + erf(x / sqrt(2)))``: five element-wise passes, each with its own
    temporary, over the FFN's widest tensor. ``F.gelu`` (its exact ``erf`` form) is the same function in one
    pass; the two agree to float rounding. On the item tower's (items x tokens x 4d) FFN the five passes
    were about 40% of a full evaluation's time on CPU. No parameter changes, so checkpoints are unaffected.
    """
    for layer in module.modules():
        if isinstance(layer, FeedForward) and layer.intermediate_act_fn == layer.gelu:
            layer.intermediate_act_fn = F.gelu
    return module


class MergeAttentionFusion(nn.Module):
    """Fuse an item's text tokens and image tokens into one vector.

    Args:
        hidden_size: token width ``d`` (both modalities are already projected to it).
        n_heads: attention heads of the merge layer (config key ``fusion_heads``).
        dropout: hidden and attention dropout of the merge layer (``fusion_dropout``).
        inner_size: FFN width; ``None`` means ``4 * hidden_size``.
        hidden_act: FFN activation, one of gelu, relu, swish, tanh, sigmoid.
        layer_norm_eps: epsilon of the two post-LN layer norms.

    Parameters live under ``merge_layer.`` (RecBole's ``TransformerLayer``: ``multi_head_attention.*``,
    ``feed_forward.*``) with PyTorch's default initialisation; the model may re-initialise them.
    """

    def __init__(
        self,
        hidden_size: int,
        n_heads: int,
        dropout: float = 0.1,
        inner_size: Optional[int] = None,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-12,
    ) -> None:
        super().__init__()
        if hidden_size <= 0 or n_heads <= 0 or hidden_size % n_heads != 0:
            raise PMMRecConfigError(
                f"fusion: hidden_size={hidden_size} must be a positive multiple of fusion_heads={n_heads}; "
                "change `hidden_size` or `fusion_heads` in the config."
            )
        if hidden_act not in _ACTIVATIONS:
            raise PMMRecConfigError(
                f"fusion: hidden_act={hidden_act!r} is not one of {', '.join(_ACTIVATIONS)}; fix `hidden_act`."
            )
        if not 0.0 <= dropout < 1.0:
            raise PMMRecConfigError(f"fusion: fusion_dropout={dropout} must be in [0, 1); fix `fusion_dropout`.")
        self.hidden_size = hidden_size
        self.n_heads = n_heads
        self.inner_size = inner_size if inner_size is not None else 4 * hidden_size
        self.merge_layer = TransformerLayer(
            n_heads=n_heads,
            hidden_size=hidden_size,
            intermediate_size=self.inner_size,
            hidden_dropout_prob=dropout,
            attn_dropout_prob=dropout,
            hidden_act=hidden_act,
            layer_norm_eps=layer_norm_eps,
        )
        fused_gelu(self.merge_layer)

    def attend(self, tokens: Tensor, valid: Tensor) -> Tensor:
        """The merge layer on ``tokens`` (N, L, d) with key mask ``valid`` (N, L) bool, then the masked
        mean over the valid tokens -> (N, d)."""
        # additive mask (N, 1, 1, L): 0 for valid keys, the most negative number for the rest, so an
        # invalid key's softmax weight underflows to exactly 0.
        extended = (~valid).to(tokens.dtype)[:, None, None, :] * torch.finfo(tokens.dtype).min
        states = self.merge_layer(tokens, extended)  # (N, L, d)
        return masked_mean(states, valid)

    def forward(
        self,
        text_tokens: Optional[Tensor] = None,
        text_mask: Optional[Tensor] = None,
        image_tokens: Optional[Tensor] = None,
        has_text: Optional[Tensor] = None,
        has_image: Optional[Tensor] = None,
    ) -> Tensor:
        """Item vectors (N, d).

        Args:
            text_tokens: (N, Lt, d) projected text tokens, or None in an image-only model.
            text_mask: (N, Lt) bool, True for real (non-padding) text tokens; None = all real.
            image_tokens: (N, Lv, d) projected image tokens, or None in a text-only model.
            has_text: (N,) bool, the item has a text; None = every item has one.
            has_image: (N,) bool, the item has an image; None = every item has one.
        """
        if text_tokens is None and image_tokens is None:
            raise PMMRecConfigError("fusion: neither text nor image tokens were given; set `modalities`.")

        text_valid = None
        if text_tokens is not None:
            n, lt = text_tokens.shape[:2]
            text_valid = torch.ones(n, lt, dtype=torch.bool, device=text_tokens.device)
            if text_mask is not None:
                text_valid = text_valid & text_mask.bool()
            if has_text is not None:
                text_valid = text_valid & has_text.bool()[:, None]
        image_valid = None
        if image_tokens is not None:
            n, lv = image_tokens.shape[:2]
            image_valid = torch.ones(n, lv, dtype=torch.bool, device=image_tokens.device)
            if has_image is not None:
                image_valid = image_valid & has_image.bool()[:, None]

        if image_tokens is None:  # text-only model
            return masked_mean(text_tokens, text_valid)
        if text_tokens is None:  # image-only model
            return masked_mean(image_tokens, image_valid)
        tokens = torch.cat([text_tokens, image_tokens], dim=1)  # (N, Lt + Lv, d)
        valid = torch.cat([text_valid, image_valid], dim=1)  # (N, Lt + Lv)
        return self.attend(tokens, valid)
