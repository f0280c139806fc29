"""The item tower: item ids -> item vectors, from content only. The one place that knows modalities.

```
text  states (ItemFeatures) --text_encoder.backbone (top k blocks)--> tokens --text_encoder.proj--> (N, Lt, d)
image states (ItemFeatures) --image_encoder.backbone (top k blocks)--> tokens --image_encoder.proj--> (N, Lv, d)
fusion(text tokens, image tokens, masks) -> item vectors (N, d)
```

The frozen bottom of each encoder belongs to the dataset's :class:`~recbole_pmmrec.data.features.ItemFeatures`:
``encoder_mode: cached`` (default) reads its cached output, ``end_to_end`` runs it on raw token ids / pixels
every step (GPU users; the bottom is frozen and in eval mode either way). The tower owns the trainable top
blocks (a copy per model) and everything after them.

A single-modality item is the projection of the masked mean of its encoder tokens (with the default linear
projection that equals the mean of the projected tokens, the authors' definition). When that encoder is
frozen (``*_train_layers: 0``), the mean is computed once for the whole catalogue and the tower costs one
small projection per item: exact, not an approximation. With ``whiten`` [ours] those pooled states (with text +
image: the frozen text groups, with the pooled text states' statistics) are centred (and decorrelated) with the
catalogue's statistics first (:func:`~recbole_pmmrec.model.similarity.whitening`; on a merged data set, each
source's own); items added later reuse them.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from recbole_pmmrec.data.features import ItemFeatures
from recbole_pmmrec.errors import PMMRecConfigError
from recbole_pmmrec.data.pooling import masked_mean, pool_token_groups
from recbole_pmmrec.model.fusion import MergeAttentionFusion
from recbole_pmmrec.model.similarity import whitening

logger = logging.getLogger(__name__)


def pooled_once(settings, modalities) -> str | None:
    """The modality whose item states the tower summarises once for the whole catalogue (their masked mean: exact,
    the states never change): the only one, read from the cache, with no trainable encoder blocks; else None."""
    if (len(modalities) == 1 and settings.encoder_mode == "cached"
            and getattr(settings, f"{modalities[0]}_train_layers") == 0):
        return modalities[0]
    return None


def default_whiten(settings, modalities) -> str:
    """``whiten: ~`` (the default): ``zca`` for text alone from a frozen encoder (no trainable blocks) with cached
    states, else ``raw``. Measured with text alone: MicroLens-50K 1.21x (2 seeds), ml100k-posters text 1.02x, seqrec-toys
    1.00x (1.02x with the item ID, ahead on 3 of 3 seeds). Not measured with images (image alone, text + image):
    set it yourself there."""
    return "zca" if pooled_once(settings, modalities) == "text" else "raw"


DEFAULT_CONTENT_SKIP = 5.0  # the content_skip weight ~ gives frozen, cached text alone


def default_content_skip(settings, modalities) -> float:
    """``content_skip: ~`` (the default): 5.0 for text alone from a frozen encoder (no trainable blocks) with cached
    states, else 0 (off). Measured with text alone at today's batch, test NDCG@10 against the skip off: seqrec-toys
    0.0575 / 0.0570 / 0.0565 against 0.0541 / 0.0542 / 0.0530 (seeds 2020-2022, 1.06x), its hashed-ties conversion
    0.0522 against 0.0497 (1 seed), its cold split 0.0557 against 0.0515; MicroLens-50K's cold split level (0.0233
    against 0.0237, both stopped by their budget; cold Recall@10 0.0169 against 0.0149). With text + image it lost
    on ml100k-posters (0.0895 against 0.0979, 1 seed, at 64 windows): off there, and not measured with image alone."""
    return DEFAULT_CONTENT_SKIP if pooled_once(settings, modalities) == "text" else 0.0


def default_projection(modalities) -> str:
    """``projection: ~``: ``mlp`` for one modality, ``linear`` for two. With one frozen modality the MLP maps one
    pooled vector per item and costs nothing (text-only 1.08x on ml100k-posters and 1.32x on MicroLens-50K,
    image-only 1.08x, 3 seeds each); with two it maps every token that enters the fusion, 1.34x the epoch time
    for less than the seed spread (BENCHMARKS.md)."""
    return "mlp" if len(modalities) == 1 else "linear"


DEFAULT_HIDDEN_SIZE = 64  # the width hidden_size ~ gives every model but frozen, cached text alone
DEFAULT_TEXT_HIDDEN_SIZE = 128  # the width hidden_size ~ gives frozen, cached text alone
DEFAULT_W_NID = 0.1  # the NID weight w_nid ~ gives every model but frozen, cached text alone (0 there)


def default_hidden_size(settings, modalities) -> int:
    """``hidden_size: ~`` (the default): 128 for text alone from a frozen encoder (no trainable blocks) with cached
    states, else 64. With text alone the whole item tower is one projection of a 384-wide pooled state, and 64
    columns were its bottleneck; measured together with ``w_nid`` ~ (0 there), test NDCG@10 against d 64 with NID:
    seqrec-toys 0.0595 / 0.0591 / 0.0599 against 0.0575 / 0.0570 / 0.0565 (seeds 2020-2022, 1.04x, about half
    the fitting time), MicroLens-50K 0.0312 against 0.0296 (1 seed), seqrec-beauty 0.0565 against 0.0550 (3 seeds),
    ml100k-posters' text 0.0874 against 0.0887 (0.99x, 3 seeds); with text + image d 128 lost on ml100k-posters
    (0.0850 against 0.0979, 1 seed)."""
    return DEFAULT_TEXT_HIDDEN_SIZE if pooled_once(settings, modalities) == "text" else DEFAULT_HIDDEN_SIZE


def default_inner_size(settings, modalities) -> int:
    """``inner_size: ~``: 4x ``hidden_size`` (as decided just before it), the Transformer's usual ratio."""
    return 4 * settings.hidden_size


def default_w_nid(settings, modalities) -> float:
    """``w_nid: ~``: 0 (off) for text alone from a frozen encoder with cached states, else 0.1. With text alone NID
    was level (seqrec-toys 0.0567 against 0.0570, 3 seeds; MicroLens-50K 0.97x, 1 seed) and took 0.62x of each
    epoch's time; off, as measured with ``hidden_size`` ~ (above)."""
    return 0.0 if pooled_once(settings, modalities) == "text" else DEFAULT_W_NID


DEFAULT_DROPOUT = 0.1  # the user encoder's dropout that hidden_dropout_prob / attn_dropout_prob ~ give every model
DEFAULT_TEXT_DROPOUT = 0.3  # ... but frozen, cached text alone


def default_dropout(settings, modalities) -> float:
    """``hidden_dropout_prob: ~`` and ``attn_dropout_prob: ~`` (the user encoder's dropout): 0.3 for text alone from a
    frozen encoder with cached states, else 0.1. At 0.1 that model peaks after 5-6 epochs and then overfits; at 0.3 it
    trains about twice as long to a higher best. Test NDCG@10 against 0.1 (seeds 2020-2022; seqrec-beauty's seed-2020
    run at 0.3 was stopped by a 1,800 s budget): seqrec-toys 0.0608 / 0.0633 / 0.0613 against 0.0595 / 0.0591 / 0.0599
    (1.04x), seqrec-beauty 0.0591 / 0.0603 / 0.0591 against 0.0565 / 0.0562 / 0.0567 (1.05x), ahead on each seed;
    ml100k-posters' text 1.02x (ahead on 2 of 3 seeds), MicroLens-50K 0.0338 against 0.0312 (seed 2020). With the
    item ID level (seqrec-toys 0.99x, 3 seeds). With text + image 0.3 held validation and lost on test (ml100k-posters
    0.0894 against 0.0965, seed 2020; 0.5 at v0.2 did the same): 0.1 stays there."""
    return DEFAULT_TEXT_DROPOUT if pooled_once(settings, modalities) == "text" else DEFAULT_DROPOUT


DEFAULT_TEXT_SCORE_TAU = 0.1  # the score_tau ~ gives frozen, cached text alone


def default_score_tau(settings, modalities) -> float:
    """``score_tau: ~``: 0.1 (cosine scores) for text alone from a frozen encoder with cached states, with or without
    ``item_id_embedding``; else 0 (dot products). Dot products let a popular item's vector grow long and rank by length;
    cosine scores keep ranking to direction. Test NDCG@10 against dot products, ID-free (0.9): seqrec-toys 1.04x (ahead
    on 3 of 3 seeds), MicroLens-50K 1.14x (seed 2021, equal budget), seqrec-clothing 1.05x (seed 2020, equal budget),
    seqrec-beauty 1.01x (3 seeds), seqrec-health and -electronics 1.01x (1 seed each), seqrec-beauty-repeats 1.02x
    (RecBole's rule, 3 seeds, ahead on each); behind on seqrec-books, 0.98x (seed 2020). With the ID (0.8):
    MicroLens-50K 1.10x, seqrec-toys 1.03x, seqrec-beauty-repeats 1.02x (3 of 3 seeds each), seqrec-electronics 1.02x,
    seqrec-clothing 1.05x, level on seqrec-beauty and -health. The cost is new items: on seqrec-toys' cold split (3
    seeds) the rows whose target is new find it a little less often (Recall@10 0.95x, behind on 2 of 3 seeds), while
    every row together gains (all-row NDCG@10 1.06x, ahead on each seed); ``score_tau: 0`` keeps dot products where new
    items matter most. With images (ml100k-posters, level over 2 seeds) and with trainable text blocks (not measured) 0
    stays."""
    return DEFAULT_TEXT_SCORE_TAU if pooled_once(settings, modalities) == "text" else 0.0


# both dropout keys follow the same rule (one entry of DATA_DEFAULTS below for each)
DROPOUT_RULE = (default_dropout, f"{DEFAULT_TEXT_DROPOUT} for frozen, cached text alone, else {DEFAULT_DROPOUT}")


# The keys whose ``~`` is decided from the data, in the order the model resolves them (a rule may read a key resolved
# before it): key -> (rule (settings, modalities) -> value, the rule in words for the log line)
DATA_DEFAULTS = {
    "projection": (lambda settings, modalities: default_projection(modalities), "mlp for one modality, linear for two"),
    "whiten": (default_whiten, "zca for frozen, cached text alone, else raw"),
    "content_skip": (default_content_skip, f"{DEFAULT_CONTENT_SKIP} for frozen, cached text alone, else 0 (off)"),
    "hidden_size": (default_hidden_size,
                    f"{DEFAULT_TEXT_HIDDEN_SIZE} for frozen, cached text alone, else {DEFAULT_HIDDEN_SIZE}"),
    "inner_size": (default_inner_size, "4x hidden_size"),
    "w_nid": (default_w_nid, f"0 (off) for frozen, cached text alone, else {DEFAULT_W_NID}"),
    "hidden_dropout_prob": DROPOUT_RULE,
    "attn_dropout_prob": DROPOUT_RULE,
    "score_tau": (default_score_tau, f"{DEFAULT_TEXT_SCORE_TAU} (cosine scores) for frozen, cached text alone, "
                                     "else 0 (dot products)"),
}


def resolve_data_defaults(settings, modalities, config=None):
    """``settings`` with every ``~`` key of DATA_DEFAULTS decided from ``modalities`` and the encoder keys; each
    decision is installed in ``config`` and logged in one line (``Config.resolve``) when a config is given."""
    for key, (rule, words) in DATA_DEFAULTS.items():
        if getattr(settings, key) is None:
            settings = settings.resolved(**{key: rule(settings, modalities)})
            if hasattr(config, "resolve"):
                config.resolve(f"decided from the modalities {list(modalities)} and the encoders: {words}",
                               **{key: getattr(settings, key)})
    return settings


class WhiteningExperts(nn.Module):
    """A mixture of parametric whitening layers [ours, after UniSRec's MoE adaptor]: expert k maps x to
    (x - b_k) W_k, a softmax gate on x mixes them. Meant to bridge the frozen text space of several domains.

    x (..., in_dim) -> (..., hidden_size).
    """

    def __init__(self, in_dim: int, hidden_size: int, n_experts: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_experts, in_dim))
        self.weight = nn.Parameter(torch.empty(n_experts, in_dim, hidden_size))
        nn.init.normal_(self.weight, std=0.02)
        self.gate = nn.Linear(in_dim, n_experts, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        experts = torch.einsum("...ki,kio->...ko", x.unsqueeze(-2) - self.bias, self.weight)  # (..., K, d)
        gates = torch.softmax(self.gate(x), dim=-1)  # (..., K)
        return (gates.unsqueeze(-1) * experts).sum(dim=-2)


def projection(in_dim: int, hidden_size: int, kind: str, n_experts: int = 8) -> nn.Module:
    """``linear`` (the authors' code), ``mlp`` ([ours]: Linear-GELU-Linear, more capacity for frozen encoders) or
    ``moe`` ([ours]: :class:`WhiteningExperts`, an adaptor between the frozen features and the model)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, 4 * hidden_size), nn.GELU(), nn.Linear(4 * hidden_size, hidden_size))
    if kind == "moe":
        return WhiteningExperts(in_dim, hidden_size, n_experts)
    return nn.Linear(in_dim, hidden_size)


class ModalityEncoder(nn.Module):
    """One modality's transfer component: the encoder's trainable top (k blocks) + projection to d."""

    def __init__(self, backbone: nn.Module, hidden_size: int, kind: str, n_experts: int = 8):
        super().__init__()
        self.backbone = backbone
        self.proj = projection(backbone.out_dim, hidden_size, kind, n_experts)


@dataclass
class ItemBatch:
    """What the tower produced for a set of items (kept for the objectives that need parts of it)."""

    vectors: Tensor              # (N, d) fused item vectors
    text_vec: Tensor | None      # (N, d) pooled projected text tokens
    image_vec: Tensor | None     # (N, d) pooled projected image tokens
    has_text: Tensor             # (N,) bool
    has_image: Tensor            # (N,) bool


class ItemTower(nn.Module):
    """Item ids -> item vectors, reading the dataset's :class:`ItemFeatures`."""

    def __init__(self, settings, features: ItemFeatures):
        super().__init__()
        self.features = features
        self.modalities = features.modalities
        self.end_to_end = settings.encoder_mode == "end_to_end"
        self.chunk_items = settings.item_chunk_size  # items per item-tower pass (see forward)
        self.n_items = features.n_items
        self.register_buffer("has_text", features.has_text.bool(), persistent=False)
        self.register_buffer("has_image", features.has_image.bool(), persistent=False)
        d = settings.hidden_size
        self.text_encoder = self.image_encoder = None
        for modality in self.modalities:
            # A copy of the dataset's encoder top: the states and the top blocks always come from the same weights.
            # settings.projection is resolved by the model (default_projection when it is ~).
            setattr(self, f"{modality}_encoder",
                    ModalityEncoder(features.top(modality), d, settings.projection, settings.moe_experts))
        self.fusion = MergeAttentionFusion(d, settings.fusion_heads, dropout=settings.fusion_dropout,
                                           hidden_act=settings.hidden_act, layer_norm_eps=settings.layer_norm_eps)
        # With two modalities the text tokens that enter the fusion are averaged in at most text_groups runs of
        # consecutive tokens (~ = every token): the fusion layer's cost grows with its token count.
        self.text_groups = settings.text_groups
        self.whiten = settings.whiten  # resolved by the model (default_whiten when it is ~)
        # [(mean, matrix)] of the catalogue's pooled states (one per source of a merged data set, each item's in
        # _domain_of), set by the first _summarise
        self._whitening, self._domain_of = None, None
        self.pooled = pooled_once(settings, self.modalities)  # the modality summarised once, or None
        self._summarise(features)
        if self.whiten != "raw" and self.pooled is None and self.text_grouped is None:
            raise PMMRecConfigError(
                f"whiten: {self.whiten} acts on frozen, cached states that the tower summarises once: one modality's "
                f"pooled states, or with text + image the text groups (text_groups set); this model has modalities "
                f"{list(self.modalities)}, encoder_mode {settings.encoder_mode!r}, text_groups {self.text_groups} and "
                f"trainable encoder blocks {[b.train_layers for b in self.backbones()]}. Set whiten: raw, or "
                f"*_train_layers 0 with encoder_mode cached.")
        # States read per batch (every modality not summarised): into RAM once, when they fit.
        if not self.end_to_end:
            for modality in self.modalities:
                if self.pooled != modality and not (modality == "text" and self.text_grouped is not None):
                    features.to_ram(modality)

    def _summarise(self, features) -> None:
        """What a frozen encoder lets the tower compute once for every item of ``features``: the text groups of
        two modalities, or the pooled states of one (exact: the frozen states never change), whitened with
        ``whiten``."""
        self.text_grouped = None
        if (len(self.modalities) == 2 and self.text_groups is not None and not self.end_to_end
                and self.text_encoder.backbone.train_layers == 0):
            tokens, mask, sizes = features.grouped_text(self.text_groups)
            if self.whiten != "raw":  # every text group, with the statistics of the items' pooled text states
                for rows in torch.arange(tokens.shape[0]).split(4096):  # in place, in the cache's dtype
                    tokens[rows] = (self._whitened(features, "text", tokens[rows], rows)
                                    * mask[rows, :, None].to(torch.float32)).to(tokens.dtype)
            self.text_grouped = (tokens, mask, sizes)
        if self.pooled is not None:
            states = features.pooled(self.pooled)
            if self.whiten != "raw":
                states = self._whitened(features, self.pooled, states, torch.arange(states.shape[0]), pooled=states)
            self.register_buffer("pooled_states", states.to(self.has_text.device), persistent=False)

    def _whitened(self, features, modality: str, x: Tensor, ids: Tensor, pooled: Tensor | None = None) -> Tensor:
        """``(x - mean) @ matrix`` for the rows of ``x`` (items ``ids``), with the ``whiten`` statistics of the
        catalogue's pooled ``modality`` states (over the items that have it), computed on the first call (``pooled``:
        those states, if already read); items added later (:meth:`view_of`) reuse them. On a data set merged from
        several sources, each source is whitened with its own statistics, as a target data set is with its own."""
        if self._whitening is None:
            states = features.pooled(modality) if pooled is None else pooled
            present = (self.has_text if modality == "text" else self.has_image).cpu()
            domains = features.item_domains
            sources = [] if domains is None else domains[present].unique().tolist()
            if len(sources) < 2:
                self._whitening, self._domain_of = [whitening(states.float(), self.whiten, present)], None
            else:
                self._whitening = [whitening(states.float(), self.whiten, present & (domains == d))
                                   for d in range(max(sources) + 1)]
                self._domain_of = domains.clamp(min=0)  # the padding item (-1) takes the first source's
                logger.info("whiten %s: each of the %d sources of this merged data set with its own statistics",
                            self.whiten, len(sources))
        if self._domain_of is None:
            mean, matrix = self._whitening[0]
            return (x.float() - mean) @ matrix
        if features.item_domains is None:
            raise PMMRecConfigError(
                f"whiten: {self.whiten} on this model is per source domain (it was trained on a merged data set), and "
                f"items added after training have no source domain: score them with a model trained (or fine-tuned) "
                f"on one data set")
        out = torch.empty(x.shape, dtype=torch.float32)
        domain = self._domain_of[ids]
        for d, (mean, matrix) in enumerate(self._whitening):
            rows = domain == d
            if rows.any():
                out[rows] = (x[rows].float() - mean) @ matrix
        return out

    def view_of(self, features) -> "ItemTower":
        """This tower reading another states source (e.g. :class:`~recbole_pmmrec.data.features.NewItemStates`
        of items added after training): a shallow view that shares every weight, so that each of those items
        gets exactly the vector it would have had in the catalogue. Call it on ids ``0 .. features.n_items-1``."""
        view = copy.copy(self)
        view._buffers = dict(self._buffers)  # its own has_text / has_image / pooled_states, same parameters
        view.features = features
        device = self.has_text.device
        view.has_text, view.has_image = features.has_text.to(device), features.has_image.to(device)
        view.n_items = features.n_items
        view._summarise(features)
        return view

    # ------------------------------------------------------------------ tokens
    def _encoder_tokens(self, modality: str, ids: Tensor) -> tuple[Tensor, Tensor]:
        """The encoder's output tokens (N, L, out_dim) and mask (N, L): frozen bottom + top k blocks."""
        top = getattr(self, f"{modality}_encoder").backbone
        states, mask = (self.features.bottom if self.end_to_end else self.features.states)(modality, ids)
        return top.encode_top(states, mask), mask

    def _text_groups(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The text tokens that enter the fusion (N, G, D), their mask and the number of encoder tokens each
        stands for: pooled groups when ``text_groups`` is set, else every token (size 1)."""
        if self.text_grouped is not None:
            tokens, mask, sizes = (t[ids.cpu()].to(ids.device) for t in self.text_grouped)
            width = max(int(mask.sum(dim=1).max()), 1)  # drop the columns no item of this batch uses
            return tokens[:, :width], mask[:, :width], sizes[:, :width]
        tokens, mask = self._encoder_tokens("text", ids)
        if self.text_groups is not None and tokens.shape[1] > self.text_groups:
            return pool_token_groups(tokens, mask, self.text_groups)
        return tokens, mask, mask.to(tokens.dtype)

    # ------------------------------------------------------------------ forward
    def forward(self, ids: Tensor) -> ItemBatch:
        """Encode the items ``ids`` (N,) (unique ids: each item once), ``chunk_items`` items at a time.

        Every item is encoded independently of the others, so the chunks give exactly the vectors of one pass.
        They are much faster on a CPU: one pass over ~1,000 items x ~40 tokens makes each element-wise step of
        the fusion layer (GELU, residual adds, layer norms) allocate and touch a fresh 40-70 MB tensor, and
        those page faults, not the arithmetic, dominated the tower's time (``bench/studies/eval_cost.py``).
        Where text tokens are read per chunk (trainable text blocks, or text + image without ``text_groups``),
        the chunks hold items of similar text length: each chunk's states are cut to its longest text, and a
        chunk of titles padded to its longest one does about 2.7x the real tokens' work in every text block
        (seqrec-toys: 12 tokens on average, 32 at most). The vectors are the same in any order.
        """
        if self.pooled is not None or ids.numel() <= self.chunk_items:  # pooled: one small projection anyway
            return self._encode(ids)
        order = None
        if "text" in self.modalities and self.text_grouped is None:  # text tokens read per chunk (docstring)
            order = torch.argsort(self.features.token_counts("text", ids), stable=True).to(ids.device)
            ids = ids[order]
        parts = [self._encode(chunk) for chunk in ids.split(self.chunk_items)]
        fields = [None if getattr(parts[0], f) is None else torch.cat([getattr(p, f) for p in parts])
                  for f in ("vectors", "text_vec", "image_vec", "has_text", "has_image")]
        if order is not None:
            back = torch.argsort(order)
            fields = [None if f is None else f[back] for f in fields]
        return ItemBatch(*fields)

    def _encode(self, ids: Tensor) -> ItemBatch:
        """:meth:`forward` on one chunk of item ids."""
        has_text, has_image = self.has_text[ids], self.has_image[ids]
        if len(self.modalities) == 1:
            modality = self.modalities[0]
            if self.pooled is not None:
                pooled = self.pooled_states[ids]
            else:
                tokens, mask = self._encoder_tokens(modality, ids)
                pooled = masked_mean(tokens, mask if modality == "text" else None)
            vec = getattr(self, f"{modality}_encoder").proj(pooled)
            present = has_text if modality == "text" else has_image
            vec = vec * present[:, None].to(vec.dtype)  # an item without the modality: zero vector
            return ItemBatch(vec, vec if modality == "text" else None, vec if modality == "image" else None,
                             has_text, has_image)

        text_tokens, text_mask, weights = self._text_groups(ids)
        image_tokens, _ = self._encoder_tokens("image", ids)
        text_tokens = self.text_encoder.proj(text_tokens)  # (N, Lt, d)
        image_tokens = self.image_encoder.proj(image_tokens)  # (N, Lv, d)
        vec = self.fusion(text_tokens, text_mask, image_tokens, has_text, has_image)
        # NICL's text vector: the mean over the item's text tokens (pooled groups weighted by their size)
        weights = weights * has_text[:, None].to(weights.dtype)
        text_vec = (text_tokens * weights[..., None]).sum(dim=1) / weights.sum(dim=1, keepdim=True).clamp(min=1)
        return ItemBatch(vec, text_vec, image_tokens.mean(dim=1), has_text, has_image)

    def backbones(self) -> list[nn.Module]:
        """The pretrained encoder tops of the modalities in use."""
        return [getattr(self, f"{modality}_encoder").backbone for modality in self.modalities]

    def encoder_parameters(self):
        """Parameters of the encoders' trainable blocks (their own learning rate and decay)."""
        for backbone in self.backbones():
            yield from (p for p in backbone.parameters() if p.requires_grad)
