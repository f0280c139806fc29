"""The TokenEncoder contract and the helpers every encoder family shares.

Every encoder is split into a frozen ``bottom`` and a trainable ``top`` of ``k`` blocks:

    encode_bottom(inputs) -> (states (N, L, state_dim), mask (N, L) bool)   # frozen, no grad
    encode_top(states, mask) -> tokens (N, L', out_dim)                      # top k blocks (+ final norm)
    forward(inputs) -> (tokens, mask)                                        # both in one go

The frozen bottom always runs in eval mode: ``train()`` puts it back into eval mode every time, so
dropout never acts in it and its output is a pure function of the input and the weights. That is
what makes caching its states exact: the states read from the encoder-state cache (data/cache.py)
are the states the bottom would compute now, and training only runs the top ``k`` blocks. In eval
mode ``encode_top(*encode_bottom(x))`` equals the unsplit model's output.

* ``bottom`` is a sub-module with ``requires_grad=False``; ``drop_bottom()`` deletes it once the
  cache exists. ``top`` holds the trainable blocks, so ``state_dict`` prefixes are ``bottom.*`` /
  ``top.*``.
* ``identity()`` describes what produces the bottom states (encoder, boundary, input size, a sha256
  of the bottom's weights). It is a cache key ingredient: its fields and the bottom's state-dict
  names must stay stable, or every user's cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from recbole_pmmrec.errors import PMMRecConfigError, PMMRecError


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


def split_advice(key: str, splittable: str) -> str:
    """What to do when a model cannot be split into a frozen bottom and trainable top blocks.

    The split happens in every ``encoder_mode``, so the way out is a frozen encoder (``key: 0``,
    which works for any model) or a model of a family that can be split.
    """
    return f"; set {key}: 0 (a frozen encoder, which works with any model) or use a model that can be split: {splittable}"


def _first(out):
    """Blocks return a tensor (transformers >= 5) or a tuple whose first item is the tensor."""
    return out[0] if isinstance(out, (tuple, list)) else out


def _pool_grid(x: Tensor, grid: int | None) -> Tensor:
    """(N, C, h, w) feature map -> (N, grid*grid, C) tokens (grid None: all h*w positions)."""
    if grid is not None:
        x = F.adaptive_avg_pool2d(x, grid)
    return x.flatten(2).transpose(1, 2)


def _tokens_to_map(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """(N, h*w, C) tokens -> (N, C, h, w) feature map (the inverse of ``_pool_grid(x, None)``)."""
    n, _, c = x.shape
    return x.transpose(1, 2).reshape(n, c, *hw)


def _pool_vit_tokens(x: Tensor, n_prefix: int, grid: int | None) -> Tensor:
    """(N, prefix + side*side, D) -> prefix (CLS) tokens kept, the square patch grid pooled to grid x grid."""
    if grid is None:
        return x
    prefix, patches = x[:, :n_prefix], x[:, n_prefix:]
    side = int(round(patches.shape[1] ** 0.5))
    return torch.cat([prefix, _pool_grid(_tokens_to_map(patches, (side, side)), grid)], dim=1)


class TokenEncoder(nn.Module):
    """Base class: a frozen ``bottom`` (always in eval mode) and a trainable ``top`` (module docstring)."""

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
            self.bottom.eval()  # always: no dropout in the bottom, so cached states are exact
        return self
