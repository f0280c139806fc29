"""PMMRec: a sequential recommender whose items are only their text and image (no item-ID embedding).

Li et al., "Multi-Modality is All You Need for Transferable Recommender Systems", ICDE 2024.

```
batch: item_id_list (B, L), item_length (B,), item_id (B,)
  -> window ids (B, L+1): the history followed by the target           (every position is supervised)
  -> unique items (U,) --item tower--> item vectors (U, d) -> slot vectors (B, L+1, d)
  -> user encoder (causal Transformer, learned positions) on slots 0..L-1 -> (B, L, d)
  -> L = NIP (or CE) + w_nicl * NICL + w_nid * NID + w_rcl * RCL
score(u, i) = user state at the last position . item vector of i
             [+ w * cos(recent history, i) in the frozen content space, with content_skip > 0: similarity.py]
```

With ``content_skip`` the vectors carry the skip term as extra columns: an item vector is ``[e_i, P c_i]`` and
a user state ``[h_u, w q_u / |q_u|]`` (:class:`~recbole_pmmrec.model.similarity.ContentSkip`), so every dot product
(NIP, CE, full ranking, recommend.py) includes it and only the user encoder reads the first ``hidden_size``
columns.

Multi-process training (``nproc > 1``): NIP gathers the windows of every rank
(:func:`recbole_pmmrec.collectives.gather_rows`), so its softmax runs over the slots of the whole global
batch and equals the single-process loss on that batch; NICL, NID and RCL stay per rank (their gradients
are averaged over ranks by DDP).

State-dict prefixes are the transfer components: ``item_tower.text_encoder.``,
``item_tower.image_encoder.``, ``item_tower.fusion.``, ``user_encoder.`` (and ``heads.`` for the
pre-training heads of NICL and NID).
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.model.layers import TransformerEncoder
from recbole.utils import InputType
from torch import Tensor, nn

from recbole_pmmrec.data.dataloader import next_item_window
from recbole_pmmrec.data.dataset import resolve_exclude_history
from recbole_pmmrec.collectives import gather_rows, is_distributed
from recbole_pmmrec.model.fusion import fused_gelu
from recbole_pmmrec.model.item_tower import ItemTower, WhiteningExperts, resolve_data_defaults
from recbole_pmmrec.model.similarity import ContentSkip
from recbole_pmmrec.settings import settings_of
from recbole_pmmrec.model.losses import corrupt_window, nicl_loss, nid_loss, nip_loss, popularity_log_q, rcl_loss


# eval_item_dtype -> the autocast dtype of the evaluation item-tower pass (None: no autocast, exact float32)
_EVAL_ITEM_DTYPES = {"float32": None, "bfloat16": torch.bfloat16}


class UserEncoder(nn.Module):
    """SASRec-style causal Transformer over item vectors with learned positions."""

    def __init__(self, max_len, hidden_size, n_layers, n_heads, inner_size, hidden_dropout, attn_dropout,
                 hidden_act, layer_norm_eps):
        super().__init__()
        self.position_embedding = nn.Embedding(max_len, hidden_size)
        self.layer_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(hidden_dropout)
        self.encoder = TransformerEncoder(n_layers=n_layers, n_heads=n_heads, hidden_size=hidden_size,
                                          inner_size=inner_size, hidden_dropout_prob=hidden_dropout,
                                          attn_dropout_prob=attn_dropout, hidden_act=hidden_act,
                                          layer_norm_eps=layer_norm_eps)
        fused_gelu(self.encoder)

    def forward(self, item_vecs: Tensor, valid: Tensor) -> Tensor:
        """item_vecs (B, L, d), valid (B, L) bool -> outputs (B, L, d); position l sees positions <= l."""
        length = item_vecs.shape[1]
        positions = torch.arange(length, device=item_vecs.device)
        x = self.dropout(self.layer_norm(item_vecs + self.position_embedding(positions)[None]))
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        allowed = causal[None, None] & valid[:, None, None, :]  # (B, 1, L, L)
        mask = torch.zeros(allowed.shape, dtype=x.dtype, device=x.device).masked_fill(~allowed, -10000.0)
        return self.encoder(x, mask, output_all_encoded_layers=False)[-1]


class PMMRec(SequentialRecommender):
    """PMMRec as a RecBole sequential recommender (see the module docstring)."""

    input_type = InputType.POINTWISE
    uses_item_content = True  # Config loads properties/content.yaml; the dataset is a PMMRecDataset

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        # --- hyper-parameters: the validated settings (defaults and ranges: properties/model/PMMRec.yaml)
        features = dataset.item_features
        s = settings_of(config)
        s = resolve_data_defaults(s, features.modalities, config)  # each ~ decided from the data, logged
        self.hidden_size = s.hidden_size
        self.loss_type = s.loss_type
        self.nip_debias = s.nip_debias
        self.nip_negatives = s.nip_negatives
        self.w_nicl, self.nicl_tau = s.w_nicl, s.nicl_tau
        self.w_nid, self.nid_ratio = s.w_nid, s.nid_ratio
        self.w_rcl, self.rcl_tau = s.w_rcl, s.rcl_tau
        self.initializer_range = s.initializer_range
        self.hidden_act = s.hidden_act
        # Rank only items outside the input history (the authors' evaluation removes a user's history items).
        self.exclude_history = resolve_exclude_history(config, dataset)
        # NIP's negatives include the items a user had before each target (off by default: lost where users repeat)
        self.history_negatives = s.nip_history_negatives
        # [ours] > 0: scores are cos(user, item) / score_tau (the content_skip term added unchanged); 0: dot products
        self.score_tau = s.score_tau
        # Precision of the evaluation pass that computes every item vector (training always runs in float32).
        self.eval_item_dtype = s.eval_item_dtype

        # --- the two towers
        self.item_tower = ItemTower(s, features)
        self.user_encoder = UserEncoder(self.max_seq_length, self.hidden_size, s.n_layers, s.n_heads, s.inner_size,
                                        s.hidden_dropout_prob, s.attn_dropout_prob, s.hidden_act, s.layer_norm_eps)
        # --- optional content-similarity term [ours]; its weight travels with the user encoder
        self.user_encoder.skip = None
        if s.content_skip > 0:
            self.user_encoder.skip = ContentSkip(features, s.content_skip_dim, s.knn_decay, s.knn_history,
                                                 s.content_skip, s.knn_whiten)
        # --- pre-training heads
        self.heads = nn.ModuleDict()
        if self.w_nicl > 0 and len(self.item_tower.modalities) < 2:
            logging.getLogger(__name__).info("w_nicl=%s has no effect: NICL aligns text and image, and this model "
                                             "has %s only", self.w_nicl, self.item_tower.modalities[0])
            self.w_nicl = 0.0
        if self.w_nicl > 0:
            self.heads["nicl"] = nn.Sequential(nn.Linear(self.hidden_size, self.hidden_size), nn.GELU(),
                                               nn.Linear(self.hidden_size, self.hidden_size))
        if self.w_nid > 0:
            self.heads["nid"] = nn.Linear(self.hidden_size, 1)
        # --- optional item-ID embedding [ours; UniSRec's transductive mode]: added to the content vector of items
        # with a training interaction; an item without one (cold, or added later) keeps its content vector only.
        self.item_id_embedding = None
        if s.item_id_embedding:
            self.item_id_embedding = nn.Embedding(self.n_items, self.hidden_size, padding_idx=0)
            warm = features.train_item_counts > 0 if features.train_item_counts is not None else \
                torch.ones(self.n_items, dtype=torch.bool)
            # how much of its ID row each item's vector gets: 0 for an item without training interactions (cold);
            # [ours] item_id_shrink c: n / (n + c) for an item with n of them, else the whole row
            scale = torch.ones(self.n_items)
            if s.item_id_shrink > 0 and features.train_item_counts is not None:
                n = features.train_item_counts.float()
                scale = n / (n + s.item_id_shrink)
            self.register_buffer("id_scale", torch.where(warm, scale, torch.zeros_like(scale)), persistent=False)
        # [ours] at evaluation an item without an ID row borrows the mean ID row of its k content neighbours
        self.id_neighbours = s.item_id_neighbours
        # [ours, after DropoutNet] in training each item of a batch goes without its ID row with this probability
        self.id_dropout = s.item_id_dropout
        self.id_learning_rate = s.item_id_learning_rate  # [ours] None: learning_rate, as every other module

        counts = features.train_item_counts
        log_q = popularity_log_q(counts) if counts is not None else torch.zeros(self.n_items)
        self.register_buffer("log_q", log_q, persistent=False)
        # nip_negatives draw from the items with a training interaction (a new item is unknown at training time)
        pool = torch.nonzero(counts[1:] > 0).flatten() + 1 if counts is not None else torch.empty(0, dtype=torch.long)
        self.register_buffer("negative_pool", pool if pool.numel() else torch.arange(1, self.n_items),
                             persistent=False)
        self._item_cache = None  # all item vectors, valid while the weights do not change (eval mode)
        self._scoring_cache = None  # (the item_vectors() tensor it was made from, its scoring_vectors), eval mode
        pretrained = {id(m) for backbone in self.item_tower.backbones() for m in backbone.modules()}
        for module in self.modules():
            if id(module) not in pretrained:  # pretrained backbones keep their weights
                self._init_weights(module)

    def _init_weights(self, module):
        """SASRec's initialisation for the fresh modules (projections, fusion, user encoder, heads)."""
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(mean=0.0, std=self.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)

    # ------------------------------------------------------------------ helpers
    @property
    def skip(self) -> ContentSkip | None:
        """The ``content_skip`` term (a submodule of the user encoder: its weight transfers with it), or None."""
        return self.user_encoder.skip

    @property
    def id_warm(self) -> Tensor:
        """Which items have an ID row (n_items,): those with a training interaction (with ``item_id_embedding``)."""
        return self.id_scale > 0

    def train(self, mode: bool = True):
        if mode or self.training:  # weights may change from here on (or did since the cache was made)
            self._item_cache = self._scoring_cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        self._item_cache = self._scoring_cache = None
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def architecture(self) -> dict:
        """What this model's weights were built with (a component checkpoint's header records it, and a loading
        model compares it): the transfer module never reads the layers itself."""
        tower = self.item_tower
        first = getattr(tower, f"{tower.modalities[0]}_encoder").proj
        user_layer = self.user_encoder.encoder.layer[0]
        kind = "linear" if isinstance(first, nn.Linear) else "moe" if isinstance(first, WhiteningExperts) else "mlp"
        return {
            "modalities": list(tower.modalities),
            "hidden_size": int(self.hidden_size),
            "projection": kind,
            **({"moe_experts": int(first.bias.shape[0])} if kind == "moe" else {}),
            "whiten": tower.whiten,  # the projection was trained on states whitened this way
            "content_skip": float(self.skip.weight.detach()) if self.skip is not None else 0.0,  # its trained w
            "knn_whiten": self.skip.whiten if self.skip is not None else "raw",  # the skip's geometry
            "fusion_heads": int(tower.fusion.n_heads),
            "n_layers": len(self.user_encoder.encoder.layer),
            "n_heads": int(user_layer.multi_head_attention.num_attention_heads),
            "inner_size": int(user_layer.feed_forward.dense_1.out_features),
            "hidden_act": self.hidden_act,
            "max_seq_length": int(self.user_encoder.position_embedding.num_embeddings),
        }

    def parameter_groups(self, learning_rate, weight_decay, encoder_learning_rate, encoder_weight_decay):
        """Optimiser groups: trainable encoder blocks, and everything else (the paper uses different
        learning rates and weight decay for them)."""
        encoder = {id(p) for p in self.item_tower.encoder_parameters()}
        own_lr = self.item_id_embedding is not None and self.id_learning_rate is not None
        apart = encoder | ({id(self.item_id_embedding.weight)} if own_lr else set())
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in apart]
        groups = [{"params": rest, "lr": learning_rate, "weight_decay": weight_decay, "name": "recommender"}]
        if own_lr:  # item_id_learning_rate: the ID rows at their own rate
            groups.append({"params": [self.item_id_embedding.weight], "lr": self.id_learning_rate,
                           "weight_decay": weight_decay, "name": "item_ids"})
        enc = [p for p in self.parameters() if id(p) in encoder]
        if enc:
            groups.append({"params": enc, "lr": encoder_learning_rate, "weight_decay": encoder_weight_decay,
                           "name": "encoders"})
        return groups

    def encode_items(self, ids: Tensor):
        """The item tower on ``ids`` (unique ids), plus the item-ID embedding of warm items when it is on."""
        items = self.item_tower(ids)
        if self.item_id_embedding is not None:
            keep = self.id_scale[ids]
            if self.training and self.id_dropout > 0:  # item_id_dropout: this batch sees these items by content
                keep = keep * (torch.rand(ids.shape, device=ids.device) >= self.id_dropout)
            items.vectors = items.vectors + self.item_id_embedding(ids) * keep.to(items.vectors.dtype)[:, None]
        return items

    def item_vectors(self) -> Tensor:
        """Vectors of every item (n_items, d [+ k with content_skip]), computed once while the weights do not
        change."""
        if self.training or self._item_cache is None:
            ids = torch.arange(self.n_items, device=self.log_q.device)
            dtype = None if self.training else _EVAL_ITEM_DTYPES[self.eval_item_dtype]
            with torch.autocast(ids.device.type, dtype=dtype, enabled=dtype is not None):
                vecs = torch.cat([self.encode_items(chunk).vectors for chunk in ids.split(2048)])
            if self.training:
                return self._with_skip(vecs, None if self.skip is None else self.skip.catalogue)
            # users and scores stay float32 in either case
            vecs = vecs.float()
            if self._borrows_ids():
                cold = ~self.id_warm
                cold[0] = False  # padding
                if cold.any():
                    vecs[cold] = vecs[cold] + self.borrowed_id_vectors(vecs[cold], self._content_of(vecs))
            self._item_cache = self._with_skip(vecs, None if self.skip is None else self.skip.catalogue)
        return self._item_cache

    def _borrows_ids(self) -> bool:
        return self.item_id_embedding is not None and self.id_neighbours > 0 and bool(self.id_warm.any())

    def _content_of(self, vecs: Tensor) -> Tensor:
        """The content part of catalogue vectors ``vecs`` (n_items, d): each warm item's ID row taken off."""
        rows = self.item_id_embedding.weight.to(vecs.dtype)
        return vecs - rows * self.id_scale[:, None].to(vecs.dtype)

    @torch.no_grad()
    def borrowed_id_vectors(self, content: Tensor, catalogue_content: Tensor) -> Tensor:
        """ID vectors (N, d) for N items without an ID row (``item_id_neighbours`` = k > 0): the mean ID row of
        the k warm catalogue items whose content vectors have the highest cosine with each item's ``content``
        (N, d). Without it a new item lacks the ID part that every warm item's score has."""
        warm = torch.nonzero(self.id_warm).flatten()
        k = min(self.id_neighbours, warm.numel())
        keys = F.normalize(catalogue_content[warm].float(), dim=-1)
        rows = self.item_id_embedding.weight[warm].float() * self.id_scale[warm, None]  # as each enters its item
        out = torch.empty(content.shape[0], rows.shape[1], dtype=torch.float32, device=content.device)
        for start in range(0, content.shape[0], 1024):
            query = F.normalize(content[start:start + 1024].float(), dim=-1)
            top = (query @ keys.T).topk(k, dim=-1).indices
            out[start:start + 1024] = rows[top].mean(dim=1)
        return out.to(content.dtype)

    def scoring_vectors(self, item_vecs: Tensor) -> Tensor:
        """The item side of every score, from item vectors (..., d [+ k]) as :meth:`item_vectors` returns them: a
        user's scores are ``user_states(...) @ scoring_vectors(item_vecs).T``. With ``score_tau`` the learned part
        (the first d columns) is scaled to length 1 and the content_skip columns are unchanged; without it
        ``item_vecs`` itself."""
        if not self.score_tau:
            return item_vecs
        d = self.hidden_size
        return torch.cat([F.normalize(item_vecs[..., :d], dim=-1), item_vecs[..., d:]], dim=-1)

    def _catalogue_scoring(self, item_vecs: Tensor) -> Tensor:
        """:meth:`scoring_vectors` of the whole catalogue ``item_vecs``, kept in eval mode for as long as
        :meth:`item_vectors` returns the same tensor (one normalisation per evaluation, not one per batch)."""
        if self.training or not self.score_tau:
            return self.scoring_vectors(item_vecs)
        cached = self._scoring_cache
        if cached is None or cached[0] is not item_vecs:
            cached = self._scoring_cache = (item_vecs, self.scoring_vectors(item_vecs))
        return cached[1]

    def _user_side(self, states: Tensor) -> Tensor:
        """The user side of every score from user-encoder outputs (..., d): ``states / |states| / score_tau`` with
        ``score_tau``, else ``states``."""
        return F.normalize(states, dim=-1) / self.score_tau if self.score_tau else states

    def _with_skip(self, vecs: Tensor, skip_part: Tensor | None) -> Tensor:
        """``[vecs, skip_part]`` with content_skip, else ``vecs``."""
        return vecs if self.skip is None else torch.cat([vecs, skip_part.to(vecs.dtype)], dim=-1)

    def vectors_of(self, features) -> Tensor:
        """Vectors (N, d) of items outside the catalogue (a :class:`~recbole_pmmrec.data.features.NewItemStates`),
        computed as :meth:`item_vectors` computes the catalogue's in evaluation: content only (a new item has
        no ID-embedding row: it is cold; with ``item_id_neighbours`` it borrows its neighbours'), same autocast
        dtype, float32 out."""
        view = self.item_tower.view_of(features)
        ids = torch.arange(features.n_items, device=self.log_q.device)
        dtype = _EVAL_ITEM_DTYPES[self.eval_item_dtype]
        with torch.inference_mode(), torch.autocast(ids.device.type, dtype=dtype, enabled=dtype is not None):
            vecs = torch.cat([view(chunk).vectors for chunk in ids.split(2048)]).float()
        if self._borrows_ids():
            with torch.inference_mode():
                catalogue = self._content_of(self.item_vectors()[:, :self.hidden_size])
                vecs = vecs + self.borrowed_id_vectors(vecs, catalogue)
        return self._with_skip(vecs, None if self.skip is None else self.skip.project(features))

    def user_states(self, item_seq: Tensor, item_seq_len: Tensor, item_vecs: Tensor) -> Tensor:
        """State after the last item of each history: (B, d [+ k with content_skip]); ``item_vecs`` as
        :meth:`item_vectors` returns them."""
        d = self.hidden_size
        out = self.user_encoder(item_vecs[item_seq][..., :d], item_seq > 0)
        states = self._user_side(self.gather_indexes(out, item_seq_len - 1))
        if self.skip is None:
            return states
        return torch.cat([states, self.skip.query(item_seq, item_seq_len, item_vecs[:, d:])], dim=-1)

    # ------------------------------------------------------------------ RecBole API
    def forward(self, item_seq: Tensor, item_seq_len: Tensor) -> Tensor:
        return self.user_states(item_seq, item_seq_len, self.item_vectors())

    def calculate_loss(self, interaction):
        item_seq, item_seq_len = interaction[self.ITEM_SEQ], interaction[self.ITEM_SEQ_LEN]
        if "window" in interaction.interaction:  # added by PMMRecTrainDataLoader
            ids = interaction["window"]  # (B, L+1)
        else:
            ids = next_item_window(item_seq, item_seq_len, interaction[self.POS_ITEM_ID])
        batch_items, batch_inverse = torch.unique(ids, return_inverse=True)  # the batch's distinct items
        extra = extra_rows = None
        if self.loss_type == "CE":  # the softmax needs every item's vector: encode the catalogue once
            uniq, inverse = torch.arange(self.n_items, device=ids.device), ids
        elif self.nip_negatives > 0:  # mixed negatives: the batch's items and a uniform sample, encoded together
            pick = torch.randint(self.negative_pool.numel(), (self.nip_negatives,), device=ids.device)
            extra = self.negative_pool[pick]
            uniq, inverse_all = torch.unique(torch.cat([ids.reshape(-1), extra]), return_inverse=True)
            inverse, extra_rows = inverse_all[:ids.numel()].view_as(ids), inverse_all[ids.numel():]
        else:  # each item encoded once per batch
            uniq, inverse = batch_items, batch_inverse
        items = self.encode_items(uniq)
        slot_emb = items.vectors[inverse]  # (B, L+1, d)
        valid_in = ids[:, :-1] > 0
        seq_out = self.user_encoder(slot_emb[:, :-1], valid_in)  # (B, L, d)
        # with score_tau: cos / score_tau, unit vectors on both sides (each distinct item normalised once, then
        # gathered to its slots)
        score_out, all_vecs = self._user_side(seq_out), self.scoring_vectors(items.vectors)
        score_emb = all_vecs[inverse] if self.score_tau else slot_emb
        if self.skip is not None:  # the content-similarity columns: [h, w q/|q|] . [e, P c]
            slot_part = self.skip.catalogue[ids]  # (B, L+1, k)
            score_out = torch.cat([score_out, self.skip.queries(slot_part[:, :-1])], dim=-1)
            score_emb = torch.cat([score_emb, slot_part], dim=-1)
            all_vecs = self._with_skip(all_vecs, self.skip.catalogue[uniq])

        if self.loss_type == "NIP":
            log_q = self.log_q if self.nip_debias else None
            mixed = {} if extra is None else {"extra_emb": all_vecs[extra_rows], "extra_ids": extra,
                                               "n_sampled_from": self.negative_pool.numel()}
            if is_distributed():  # negatives from the whole global batch: every rank's slots (with gradient)
                loss = nip_loss(*gather_rows(score_out, score_emb, ids), log_q, **mixed,
                                history_negatives=self.history_negatives)
            else:
                loss = nip_loss(score_out, score_emb, ids, log_q, **mixed, history_negatives=self.history_negatives)
        else:  # full-catalogue softmax at every valid position
            logits = score_out @ all_vecs.t()  # (B, L, n_items)
            targets = ids[:, 1:]
            valid = valid_in & (targets > 0)
            loss = F.cross_entropy(logits[valid], targets[valid])

        if self.w_nicl > 0:
            head = self.heads["nicl"]
            # NICL compares the batch's items only (uniq may also hold the catalogue or the sampled negatives)
            rows = slice(None) if uniq is batch_items else torch.searchsorted(uniq, batch_items)
            loss = loss + self.w_nicl * nicl_loss(head(items.text_vec[rows]), head(items.image_vec[rows]),
                                                  items.has_text[rows], items.has_image[rows], ids, batch_inverse,
                                                  self.nicl_tau)
        if self.w_nid > 0 or self.w_rcl > 0:
            src_b, src_l, is_noise = corrupt_window(ids, self.nid_ratio)
            noisy_out = self.user_encoder(slot_emb[src_b, src_l], valid_in)
            if self.w_nid > 0:
                logits = self.heads["nid"](noisy_out).squeeze(-1)
                loss = loss + self.w_nid * nid_loss(logits, is_noise, valid_in)
            if self.w_rcl > 0:
                last = item_seq_len - 1
                loss = loss + self.w_rcl * rcl_loss(self.gather_indexes(seq_out, last),
                                                    self.gather_indexes(noisy_out, last), self.rcl_tau)
        return loss

    def predict(self, interaction):
        item_vecs = self.item_vectors()
        item_seq, items = interaction[self.ITEM_SEQ], interaction[self.ITEM_ID]
        users = self.user_states(item_seq, interaction[self.ITEM_SEQ_LEN], item_vecs)
        scores = (users * self.scoring_vectors(item_vecs[items])).sum(dim=-1)
        if self.exclude_history:
            seen = ((item_seq == items[:, None]) & (item_seq > 0)).any(dim=1)
            scores = scores.masked_fill(seen, float("-inf"))
        return scores

    def full_sort_predict(self, interaction):
        item_vecs = self.item_vectors()
        item_seq = interaction[self.ITEM_SEQ]
        users = self.user_states(item_seq, interaction[self.ITEM_SEQ_LEN], item_vecs)
        scores = users @ self._catalogue_scoring(item_vecs).t()
        if self.exclude_history:  # padding slots hit item 0, which RecBole never ranks anyway
            scores = scores.scatter(1, item_seq, float("-inf"))
        return scores

