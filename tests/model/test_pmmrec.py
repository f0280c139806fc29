"""PMMRec as a whole: cached = end-to-end, scoring paths agree, cold items, modalities, training signal."""

import logging

import pytest
import torch

from recbole_pmmrec.quick_start import load_config
from recbole_pmmrec.utils import create_dataset, data_preparation, get_model


def build(data, pmmrec_config, **overrides):
    config = load_config("PMMRec", data.name, config_dict=pmmrec_config(data, **overrides))
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    torch.manual_seed(0)
    model = get_model("PMMRec")(config, train._dataset)
    return config, model, train, valid, test


def first_batch(loader):
    batch = next(iter(loader))
    return batch[0] if isinstance(batch, tuple) else batch


@pytest.mark.parametrize("train_layers", [0, 1])
def test_cached_states_give_the_same_item_vectors_as_the_whole_encoder(synth, pmmrec_config, train_layers):
    """Caching the frozen bottom is exact: same weights, eval mode -> same item vectors (text and image)."""
    # float32 storage: exact. (float16, the default, rounds states to ~1e-3 relative.)
    overrides = dict(text_train_layers=train_layers, image_train_layers=train_layers, cache_dtype="float32")
    config, cached, train, *_ = build(synth, pmmrec_config, **overrides)
    e2e_config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth, encoder_mode="end_to_end",
                                                                            **overrides))
    features = train._dataset.item_features
    features.encoder_batch_size = 5  # end_to_end runs the frozen bottom 5 items at a time: chunking is exact too
    e2e = get_model("PMMRec")(e2e_config, train._dataset)
    assert e2e.item_tower.end_to_end and cached.n_items > 5
    e2e.load_state_dict(cached.state_dict())  # the same tensors: the frozen bottom belongs to the data
    cached.eval(), e2e.eval()
    with torch.no_grad():
        ids = torch.arange(cached.n_items)
        a, b = cached.item_tower(ids), e2e.item_tower(ids)
    for part in ("vectors", "text_vec", "image_vec"):
        assert (getattr(a, part) - getattr(b, part)).abs().max() < 1e-4, part


@pytest.mark.parametrize("train_layers", [0, 1])
def test_item_tower_chunks_give_the_same_vectors_and_gradients_as_one_pass(synth, pmmrec_config, train_layers):
    """``item_chunk_size`` is a speed knob only: chunked vectors and loss gradients equal a single pass."""
    config, model, train, *_ = build(synth, pmmrec_config, text_train_layers=train_layers,
                                     image_train_layers=train_layers, hidden_dropout_prob=0.0,
                                     attn_dropout_prob=0.0, fusion_dropout=0.0, w_nid=0.0, w_rcl=0.0)
    tower = model.item_tower
    ids = torch.arange(1, model.n_items)
    model.eval()
    with torch.no_grad():
        tower.chunk_items = ids.numel()
        whole = tower(ids)
        tower.chunk_items = 3  # many chunks of unequal text widths, the last one short
        chunked = tower(ids)
    assert ids.numel() > 3 * 3
    for part in ("vectors", "text_vec", "image_vec", "has_text", "has_image"):
        assert torch.allclose(getattr(whole, part).float(), getattr(chunked, part).float(), atol=1e-5), part
    # with a trainable text block the text tokens are read per chunk: the chunks hold items of similar text length
    # (each chunk is cut to its longest text), shortest first; frozen text groups are read in id order
    assert (tower.text_grouped is None) == (train_layers == 1)
    seen, encode = [], tower._encode
    tower._encode = lambda chunk: seen.append(chunk) or encode(chunk)
    with torch.no_grad():
        tower(ids.flip(0))
    del tower._encode
    lengths = tower.features.token_counts("text", torch.cat(seen))
    assert len(seen) > 3 and len(set(lengths.tolist())) > 1
    assert torch.equal(lengths, lengths.sort().values) == (train_layers == 1)

    batch = first_batch(train)
    grads = []
    for chunk in (10**6, 3):
        tower.chunk_items = chunk
        model.zero_grad()
        model.calculate_loss(batch).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and any("fusion" in n for n in grads[0])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4), name


def test_full_sort_predict_equals_predict_over_all_items(synth, pmmrec_config):
    _, model, _, _, test = build(synth, pmmrec_config)
    model.eval()
    batch = first_batch(test)
    with torch.no_grad():
        full = model.full_sort_predict(batch)  # (B, n_items)
        for item in range(1, model.n_items, 7):
            batch.interaction[model.ITEM_ID] = torch.full((len(batch),), item)
            assert torch.allclose(model.predict(batch), full[:, item], atol=1e-5)


def test_training_reduces_the_loss_and_every_objective_contributes(synth, pmmrec_config):
    _, model, train, *_ = build(synth, pmmrec_config, w_nicl=0.5, w_nid=0.5, w_rcl=0.5)
    batch = first_batch(train)
    assert "window" in batch.interaction and batch["window"].shape[1] == model.max_seq_length + 1
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    losses = []
    for _ in range(15):
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]
    for name in ("nicl", "nid"):
        head = model.heads[name]
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters()), name


def test_objective_weights_turn_terms_on_and_off(synth, pmmrec_config):
    _, base, train, *_ = build(synth, pmmrec_config, w_nicl=0, w_nid=0, w_rcl=0)
    assert len(base.heads) == 0
    batch = first_batch(train)
    base.eval()  # no dropout: differences come from the objectives only
    torch.manual_seed(1)
    nip_only = base.calculate_loss(batch).item()
    for key in ("w_nicl", "w_nid", "w_rcl"):
        _, model, *_ = build(synth, pmmrec_config, **{"w_nicl": 0, "w_nid": 0, "w_rcl": 0, key: 1.0})
        model.load_state_dict(base.state_dict(), strict=False)
        model.eval()
        torch.manual_seed(1)
        assert model.calculate_loss(batch).item() > nip_only, key


def test_cold_items_get_finite_varied_scores_and_can_rank_first(tmp_path, pmmrec_config):
    from recbole_pmmrec.synthetic import make_synthetic_dataset
    from recbole_pmmrec.trainer import PMMRecTrainer

    from recbole.utils import init_seed

    init_seed(2020, True)  # python / numpy / torch RNGs: the outcome must not depend on which tests ran before
    data = make_synthetic_dataset(tmp_path / "cold", "cold", n_users=60, n_items=40, n_topics=4, seed=3)
    config, model, train, valid, test = build(data, pmmrec_config, cold_item_ratio=0.2, epochs=8, w_nid=0, w_rcl=0,
                                              w_nicl=0, exclude_history=False)  # test histories hold cold items too
    cold = train._dataset.cold_items
    assert cold.sum() == 8
    trained_items = torch.cat([train._dataset.inter_feat["item_id"], train._dataset.inter_feat["item_id_list"].flatten()])
    assert not cold[trained_items].any(), "a cold item leaked into training"
    PMMRecTrainer(config, model).fit(train, valid, saved=False)
    model.eval()
    batch = first_batch(test)
    with torch.no_grad():
        scores = model.full_sort_predict(batch)[:, 1:]
    cold_scores = scores[:, cold[1:]]
    assert torch.isfinite(cold_scores).all() and cold_scores.std() > 0
    assert cold[1:][scores.argmax(dim=1)].any(), "no user ranks a cold item first"


@pytest.mark.parametrize("modalities", [["text"], ["image"]])
def test_single_modality_models_train_and_evaluate(synth, pmmrec_config, modalities):
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    result = run_recbole_pmmrec("PMMRec", "synth", config_dict=pmmrec_config(synth, modalities=modalities))
    assert 0 <= result["test_result"]["ndcg@10"] <= 1
    assert result["config"]["modalities"] == modalities


def test_items_without_image_or_without_text_still_get_vectors(tmp_path, pmmrec_config):
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "gaps", "gaps", n_users=30, n_items=30, missing_image_frac=0.3, seed=1)
    item_file = data.folder / "gaps.item"
    lines = item_file.read_text().splitlines()
    lines[1] = lines[1].split("\t")[0] + "\t\t"  # item 1: no text (it keeps its image)
    item_file.write_text("\n".join(lines) + "\n")
    (data.folder / "gaps.images" / "1.png").exists() or pytest.skip("item 1 drew no image")
    _, model, train, *_ = build(data, pmmrec_config)
    tower = model.item_tower
    item1 = list(train._dataset.field2id_token["item_id"]).index("1")  # internal id of item token "1"
    assert not tower.has_text[item1] and tower.has_image[item1]
    assert (~tower.has_image[1:]).any() and tower.has_text[1:][~tower.has_image[1:]].all()
    model.eval()
    with torch.no_grad():
        vectors = tower(torch.arange(1, model.n_items)).vectors
    assert torch.isfinite(vectors).all() and (vectors.norm(dim=1) > 0).all()
    loss = model.calculate_loss(first_batch(train))
    assert torch.isfinite(loss)


def test_optimizer_groups_give_encoder_blocks_their_own_rate(synth, pmmrec_config):
    from recbole_pmmrec.trainer import PMMRecTrainer

    config, model, *_ = build(synth, pmmrec_config, text_train_layers=1, encoder_learning_rate=1e-5,
                              encoder_weight_decay=0.0, learning_rate=1e-3, weight_decay=0.1)
    groups = {g["name"]: g for g in PMMRecTrainer(config, model).optimizer.param_groups}
    assert groups["encoders"]["lr"] == 1e-5 and groups["encoders"]["weight_decay"] == 0.0
    assert groups["recommender"]["lr"] == 1e-3 and groups["recommender"]["weight_decay"] == 0.1
    encoder_params = {id(p) for p in groups["encoders"]["params"]}
    top = model.item_tower.text_encoder.backbone.top
    assert encoder_params == {id(p) for p in top.parameters()}


@pytest.mark.parametrize("modalities", [["image"], ["text", "image"]])
def test_contentless_items_zero_fallback_is_counted_and_gives_zero_vectors(tmp_path, pmmrec_config, modalities):
    from recbole_pmmrec.errors import PMMRecDataError
    from recbole_pmmrec.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(tmp_path / "bare", "bare", n_users=30, n_items=30, seed=1)
    item_file = data.folder / "bare.item"
    lines = item_file.read_text().splitlines()
    lines[2] = lines[2].split("\t")[0] + "\t\t"  # item 2: no text ...
    item_file.write_text("\n".join(lines) + "\n")
    (data.folder / "bare.images" / "2.png").unlink()  # ... and no image
    with pytest.raises(PMMRecDataError, match=r"neither text nor image.*'2'.*contentless_items"):
        build(data, pmmrec_config, modalities=modalities)
    _, model, train, *_ = build(data, pmmrec_config, modalities=modalities, contentless_items="zero")
    dataset = train._dataset
    assert dataset.item_features.content.fallbacks["no_content_zero_vector"] == 1
    item2 = list(dataset.field2id_token["item_id"]).index("2")
    model.eval()
    with torch.no_grad():
        vectors = model.item_tower(torch.arange(1, model.n_items)).vectors
    assert torch.isfinite(vectors).all()
    norms = vectors.norm(dim=1)
    assert norms[item2 - 1] == 0 and (torch.cat([norms[:item2 - 1], norms[item2:]]) > 0).all()
    assert torch.isfinite(model.calculate_loss(first_batch(train)))


def test_ce_loss_is_the_full_catalogue_cross_entropy_at_every_position(synth, pmmrec_config):
    import torch.nn.functional as F

    _, model, train, *_ = build(synth, pmmrec_config, loss_type="CE", w_nicl=0, w_nid=0, w_rcl=0)
    batch = first_batch(train)
    model.eval()  # no dropout: the catalogue is encoded the same way in both computations
    with torch.no_grad():
        loss = model.calculate_loss(batch)
        ids = batch["window"]
        vecs = model.item_vectors()
        out = model.user_encoder(vecs[ids[:, :-1]], ids[:, :-1] > 0)
        valid = (ids[:, :-1] > 0) & (ids[:, 1:] > 0)
        expected = F.cross_entropy((out @ vecs.t())[valid], ids[:, 1:][valid])
    assert torch.allclose(loss, expected, atol=1e-5)


def test_ce_loss_nicl_compares_the_batch_items_and_equals_the_catalogue_form(synth, pmmrec_config):
    """With CE the tower encodes the whole catalogue; NICL still compares only the batch's items, and gives the
    loss it would over the catalogue's rows (``inverse = ids``)."""
    from recbole_pmmrec.model.losses import nicl_loss

    _, model, train, *_ = build(synth, pmmrec_config, loss_type="CE", w_nicl=1.0, w_nid=0, w_rcl=0)
    batch = first_batch(train)
    model.eval()
    with torch.no_grad():
        with_nicl = model.calculate_loss(batch)
        model.w_nicl = 0.0
        without = model.calculate_loss(batch)
        items = model.item_tower(torch.arange(model.n_items))
        head = model.heads["nicl"]
        whole = nicl_loss(head(items.text_vec), head(items.image_vec), items.has_text, items.has_image,
                          batch["window"], batch["window"], model.nicl_tau)
    assert whole > 0
    assert torch.allclose(with_nicl - without, whole, atol=1e-5)


def test_exclude_history_removes_exactly_the_input_items_from_the_ranking(synth, pmmrec_config):
    """``exclude_history: True``: the items of each row's input sequence score -inf in full ranking and in
    ``predict``; every other score is the plain dot product (the switch changes nothing else)."""
    _, model, _, _, test = build(synth, pmmrec_config, exclude_history=True)
    assert model.exclude_history is True
    model.eval()
    batch = first_batch(test)
    seq = batch[model.ITEM_SEQ]
    with torch.no_grad():
        masked = model.full_sort_predict(batch)
        model.exclude_history = False
        plain = model.full_sort_predict(batch)
    in_history = torch.zeros_like(plain, dtype=torch.bool).scatter(1, seq, True)
    in_history[:, 0] = (seq == 0).any(dim=1)  # padding slots point at item 0
    assert in_history[:, 1:].any()
    assert torch.isneginf(masked[in_history]).all()
    assert torch.equal(masked[~in_history], plain[~in_history]) and torch.isfinite(plain).all()
    # predict agrees with full ranking, for a history item and for the target
    item = seq[:, 0].clone()
    batch.interaction[model.ITEM_ID] = item
    model.exclude_history = True
    with torch.no_grad():
        assert torch.isneginf(model.predict(batch)).all()
        batch.interaction[model.ITEM_ID] = torch.full_like(item, 0)
        rows = torch.arange(len(item))
        targets = torch.argmax(torch.where(in_history, torch.full_like(plain, float("-inf")), plain), dim=1)
        batch.interaction[model.ITEM_ID] = targets
        assert torch.allclose(model.predict(batch), masked[rows, targets], atol=1e-5)


def test_eval_item_dtype_bfloat16_changes_only_the_evaluation_item_pass(synth, pmmrec_config):
    """``eval_item_dtype: bfloat16`` computes the evaluation item vectors under bf16 autocast: float32 vectors
    close to the exact ones but not equal (so the option really acts), and the training pass stays float32."""
    _, model, train, *_ = build(synth, pmmrec_config, hidden_dropout_prob=0.0, attn_dropout_prob=0.0,
                                fusion_dropout=0.0)
    assert model.eval_item_dtype == "float32"
    model.eval()
    with torch.no_grad():
        exact = model.item_vectors()
        model.eval_item_dtype = "bfloat16"
        model._item_cache = None
        fast = model.item_vectors()
        assert fast.dtype == torch.float32 and fast.shape == exact.shape
        rel = (fast - exact).norm(dim=1)[1:] / exact.norm(dim=1)[1:]
        assert 0 < rel.max() < 0.05
        model.train()
        assert torch.equal(model.item_vectors(), exact)  # no dropout: training mode gives the exact vectors
    with pytest.raises(Exception, match="eval_item_dtype"):
        build(synth, pmmrec_config, eval_item_dtype="float16")


def test_text_groups_pools_the_fusion_text_and_keeps_the_text_mean(synth, pmmrec_config):
    """``text_groups``: the fusion reads runs of consecutive text tokens, averaged; the catalogue's precomputed
    groups (frozen text, cached) equal pooling each batch; ``~`` feeds every token; NICL's text vector stays the
    mean over all text tokens either way."""
    from recbole_pmmrec.errors import PMMRecConfigError
    from recbole_pmmrec.data.pooling import masked_mean

    common = dict(cache_dtype="float32", fusion_dropout=0.0)
    _, pooled, *_ = build(synth, pmmrec_config, text_groups=3, **common)
    _, full, *_ = build(synth, pmmrec_config, text_groups=None, **common)
    full.load_state_dict(pooled.state_dict())
    pooled.eval(), full.eval()
    tower = pooled.item_tower
    assert tower.text_grouped is not None and full.item_tower.text_grouped is None
    ids = torch.arange(1, pooled.n_items)
    with torch.no_grad():
        pre = tower(ids)
        groups = tower.text_grouped
        tower.text_grouped = None  # pool each batch instead
        per_batch = tower(ids)
        tower.text_grouped = groups
        every = full.item_tower(ids)
        states, mask = tower.features.states("text", ids)
        mean_text = tower.text_encoder.proj(masked_mean(states, mask)) * tower.has_text[ids][:, None]
    assert int(groups[1].sum(dim=1).max()) == 3 and int(mask.sum(dim=1).max()) > 3  # pooling acts on this data
    for part in ("vectors", "text_vec", "image_vec"):
        torch.testing.assert_close(getattr(pre, part), getattr(per_batch, part), atol=1e-5, rtol=1e-5)
    assert (pre.vectors - every.vectors).abs().max() > 1e-4  # the fusion reads other tokens
    torch.testing.assert_close(pre.text_vec, mean_text, atol=1e-5, rtol=1e-4)  # linear projection: the exact mean
    torch.testing.assert_close(every.text_vec, mean_text, atol=1e-5, rtol=1e-4)
    for bad in (0, -2, 2.5, "eight"):
        with pytest.raises(PMMRecConfigError, match="text_groups"):
            build(synth, pmmrec_config, text_groups=bad)


@pytest.mark.parametrize("key,value", [("item_feature_dropout", 0.3), ("modality_dropout", 0.5), ("text_skip", True),
                                       ("image_skip", True), ("text_tokens", 8), ("cache_batch_size", 32)])
def test_removed_and_renamed_keys_are_errors_that_say_what_to_do(synth, pmmrec_config, key, value):
    """Settings measured and not adopted left the package; renamed keys give their new name. Neither is ignored."""
    from recbole_pmmrec.errors import PMMRecConfigError

    with pytest.raises(PMMRecConfigError, match=f"'{key}' was (removed|renamed)"):
        load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth, **{key: value}))


def test_item_id_embedding_is_added_to_warm_items_only(synth, pmmrec_config):
    """``item_id_embedding: True``: each item with a training interaction gets its content vector plus a learned
    ID vector; an item without one (here: a cold item) keeps its content vector; off, no ID weight exists."""
    _, plain, *_ = build(synth, pmmrec_config)
    assert plain.item_id_embedding is None and not any("item_id_embedding" in k for k in plain.state_dict())
    _, model, train, *_ = build(synth, pmmrec_config, item_id_embedding=True, cold_item_ratio=0.2)
    features = train._dataset.item_features
    cold = (features.train_item_counts == 0).nonzero().flatten()
    cold = cold[cold > 0]
    assert len(cold) > 0
    model.eval()
    with torch.no_grad():
        ids = torch.arange(1, model.n_items)
        with_ids = model.encode_items(ids).vectors
        content = model.item_tower(ids).vectors
        added = model.item_id_embedding(ids)
    warm = model.id_warm[ids]
    torch.testing.assert_close(with_ids[warm], content[warm] + added[warm])
    torch.testing.assert_close(with_ids[~warm], content[~warm])
    assert torch.equal(warm, features.train_item_counts[ids] > 0)
    loss = model.calculate_loss(first_batch(train))
    loss.backward()
    assert model.item_id_embedding.weight.grad.abs().sum() > 0


def test_only_states_read_per_batch_are_loaded_into_ram(synth, pmmrec_config):
    """A frozen single-modality model reads one pooled vector per item: its token states stay memory-mapped
    (on seqrec-food's 41k items they were 1 GB of the 2.15 GB peak). Two modalities read image tokens per batch;
    frozen text enters the fusion as precomputed groups, so the text states stay on disk too."""
    from torch import Tensor

    _, text_only, train, *_ = build(synth, pmmrec_config, modalities=["text"])
    features = train._dataset.item_features
    assert text_only.item_tower.pooled == "text" and not isinstance(features._states["text"], Tensor)
    _, fused, train, *_ = build(synth, pmmrec_config)
    features = train._dataset.item_features
    assert fused.item_tower.text_grouped is not None
    assert isinstance(features._states["image"], Tensor) and not isinstance(features._states["text"], Tensor)
    _, trained_top, train, *_ = build(synth, pmmrec_config, modalities=["text"], text_train_layers=1)
    assert isinstance(train._dataset.item_features._states["text"], Tensor)


def test_content_skip_adds_the_weighted_content_cosine_to_every_score(synth, pmmrec_config):
    """``content_skip: w0``: score(u, i) = h_u . e_i + w * cos(P q_u, P c_i) in the frozen space (ContentKNN's user
    and item vectors projected on the catalogue's principal directions); w trains (it starts at w0) and lives in
    the user encoder; the full ranking, the point-wise scores and new-item vectors agree; off, nothing is added."""
    import torch.nn.functional as F

    from recbole_pmmrec.model.similarity import content_vectors, recency_weights

    _, plain, *_ = build(synth, pmmrec_config)
    assert plain.skip is None and not any("skip" in k for k in plain.state_dict())
    _, model, train, _, test = build(synth, pmmrec_config, content_skip=2.0, content_skip_dim=8)
    skip, features, d = model.skip, train._dataset.item_features, model.hidden_size
    assert "user_encoder.skip.weight" in model.state_dict() and float(skip.weight.detach()) == 2.0
    loss = model.calculate_loss(first_batch(train))
    loss.backward()
    assert torch.isfinite(loss) and skip.weight.grad is not None and skip.weight.grad.abs() > 0

    model.eval()
    batch = first_batch(test)
    seq, lengths = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        vecs = model.item_vectors()
        h = model.gather_indexes(model.user_encoder(vecs[seq][..., :d], seq > 0), lengths - 1)
        c = content_vectors(features)
        c[0] = 0.0  # padding: no item, no content term
        pc = F.normalize((c - skip.mean) @ skip.basis, dim=-1) * (c.abs().sum(1, keepdim=True) > 0)
        q = (recency_weights(seq, lengths, skip.decay, skip.history)[..., None] * pc[seq]).sum(1)
        expected = h @ vecs[:, :d].t() + 2.0 * F.normalize(q, dim=-1) @ pc.t()
        expected = expected.scatter(1, seq, float("-inf")) if model.exclude_history else expected
        torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)
        assert vecs.shape[1] == d + 8 and skip.dim == 8
        # the catalogue's vectors recomputed as new items (recommend.py's add_items path) are the same
        torch.testing.assert_close(model.vectors_of(features)[1:], vecs[1:], rtol=1e-4, atol=1e-4)
        batch.interaction[model.ITEM_ID] = batch[model.ITEM_ID].clamp(min=1)
        point = model.predict(batch)
        rows = torch.arange(len(point))
        finite = torch.isfinite(point)
        torch.testing.assert_close(point[finite], scores[rows, batch[model.ITEM_ID]][finite], rtol=1e-4, atol=1e-4)


def test_knn_whiten_zca_on_every_direction_gives_the_skip_contentknn_zcas_cosines(synth, pmmrec_config):
    """``knn_whiten: zca`` with ``content_skip_dim`` >= the content width: every pair of the skip's item vectors has
    the cosine of ContentKNN zca's (the principal directions scaled by ``(l + 0.1 mean(l))^-1/2``), which is not the
    raw skip's; the model records the key (a header without it reads raw)."""
    from recbole_pmmrec.transfer import with_older_keys

    text = {"modalities": ["text"], "content_skip": 1.0, "content_skip_dim": 4096, "exclude_history": False}
    config, raw, *_ = build(synth, pmmrec_config, **text)
    _, zca, train, *_ = build(synth, pmmrec_config, knn_whiten="zca", **text)
    knn_config = load_config("ContentKNN", synth.name, config_dict=pmmrec_config(synth, **text, knn_whiten="zca"))
    knn = get_model("ContentKNN")(knn_config, train._dataset)
    has = knn.item_vecs.abs().sum(dim=1) > 0
    assert has[1:].all() and zca.skip.dim == knn.item_vecs.shape[1]
    ours, theirs = zca.skip.catalogue[has], knn.item_vecs[has]
    torch.testing.assert_close(ours @ ours.t(), theirs @ theirs.t(), rtol=1e-4, atol=1e-4)
    plain = raw.skip.catalogue[has]
    assert not torch.allclose(plain @ plain.t(), theirs @ theirs.t(), atol=1e-2)
    assert zca.architecture()["knn_whiten"] == "zca" and raw.architecture()["knn_whiten"] == "raw"
    assert with_older_keys({}, ())["knn_whiten"] == "raw"


def test_score_tau_scores_by_cosine_over_tau_in_training_and_ranking(synth, pmmrec_config):
    """``score_tau: t``: the training loss is NIP over unit user and item vectors with logits divided by t, and
    the full ranking, the point-wise scores and the recommender's item side all score cos(h_u, e_i) / t, with the
    content_skip term added unchanged; vector lengths then change nothing."""
    import torch.nn.functional as F

    from recbole_pmmrec.model.losses import nip_loss

    quiet = dict(hidden_dropout_prob=0.0, attn_dropout_prob=0.0, fusion_dropout=0.0, w_nid=0.0, w_nicl=0.0)
    _, model, train, _, test = build(synth, pmmrec_config, score_tau=0.05, **quiet)
    assert model.score_tau == 0.05
    batch = first_batch(train)
    ids = batch["window"]
    uniq, inverse = torch.unique(ids, return_inverse=True)
    slot = model.encode_items(uniq).vectors[inverse]
    out = model.user_encoder(slot[:, :-1], ids[:, :-1] > 0)
    expected = nip_loss(F.normalize(out, dim=-1) / 0.05, F.normalize(slot, dim=-1), ids, model.log_q)
    torch.testing.assert_close(model.calculate_loss(batch), expected, rtol=1e-5, atol=1e-5)
    _, dot, *_ = build(synth, pmmrec_config, **quiet)  # same weights (seed 0), dot products: another loss
    assert not torch.allclose(dot.calculate_loss(batch), expected, rtol=1e-3, atol=1e-3)

    _, model, train, _, test = build(synth, pmmrec_config, score_tau=0.05, content_skip=2.0, content_skip_dim=8)
    model.eval()
    batch = first_batch(test)
    seq, lengths, d = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], model.hidden_size
    with torch.no_grad():
        scores = model.full_sort_predict(batch)
        vecs = model.item_vectors()
        h = model.gather_indexes(model.user_encoder(vecs[seq][..., :d], seq > 0), lengths - 1)
        skip = model.user_states(seq, lengths, vecs)[:, d:] @ vecs[:, d:].t()  # the content_skip term
        expected = F.normalize(h, dim=-1) @ F.normalize(vecs[:, :d], dim=-1).t() / 0.05 + skip
        expected = expected.scatter(1, seq, float("-inf")) if model.exclude_history else expected
        torch.testing.assert_close(scores, expected, rtol=1e-4, atol=1e-4)
        finite = expected[torch.isfinite(expected)]
        assert finite.abs().max() <= 1 / 0.05 + 2.0 + 1e-3  # |cos| <= 1 and |w cos| <= w
        batch.interaction[model.ITEM_ID] = batch[model.ITEM_ID].clamp(min=1)
        point = model.predict(batch)
        rows = torch.arange(len(point))
        ok = torch.isfinite(point)
        torch.testing.assert_close(point[ok], scores[rows, batch[model.ITEM_ID]][ok], rtol=1e-4, atol=1e-4)


def test_score_tau_normalises_the_catalogue_once_per_evaluation(synth, pmmrec_config, monkeypatch):
    """With ``score_tau`` the catalogue's scoring vectors are made once while the item cache holds, not once per
    evaluation batch, and made again (with the new weights) after training resumes."""
    _, model, _, _, test = build(synth, pmmrec_config, score_tau=0.1)
    calls = []
    original = model.scoring_vectors
    monkeypatch.setattr(model, "scoring_vectors", lambda vecs: calls.append(vecs.shape) or original(vecs))
    batch = first_batch(test)
    model.eval()
    with torch.no_grad():
        first = model.full_sort_predict(batch)
        torch.testing.assert_close(model.full_sort_predict(batch), first)
    assert len(calls) == 1
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05)
    model.eval()
    with torch.no_grad():
        again = model.full_sort_predict(batch)
        fresh = model.user_states(batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN], model.item_vectors())
        expected = fresh @ original(model.item_vectors()).t()
        expected = expected.scatter(1, batch[model.ITEM_SEQ], float("-inf")) if model.exclude_history else expected
    assert len(calls) == 2
    torch.testing.assert_close(again, expected)
    assert not torch.allclose(again[torch.isfinite(again)], first[torch.isfinite(first)])


def test_content_skip_unset_is_on_for_frozen_cached_text_alone_and_off_otherwise(synth, pmmrec_config):
    """``content_skip: ~`` (the default) decides DEFAULT_CONTENT_SKIP for text alone from a frozen, cached encoder
    and 0 (off) with an image, trainable text blocks or image alone, logged and written back to the config; a value
    set by the user is kept."""
    from recbole_pmmrec.model.item_tower import DEFAULT_CONTENT_SKIP

    config, text, *_ = build(synth, pmmrec_config, modalities=["text"], content_skip=None)
    assert config["content_skip"] == DEFAULT_CONTENT_SKIP > 0
    assert float(text.skip.weight.detach()) == DEFAULT_CONTENT_SKIP
    for overrides in ({}, {"modalities": ["image"]}, {"modalities": ["text"], "text_train_layers": 1}):
        config, model, *_ = build(synth, pmmrec_config, content_skip=None, **overrides)
        assert config["content_skip"] == 0.0 and model.skip is None, overrides
    config, kept, *_ = build(synth, pmmrec_config, modalities=["text"], content_skip=0.0)
    assert config["content_skip"] == 0.0 and kept.skip is None


def test_width_and_nid_unset_follow_the_modalities(synth, pmmrec_config):
    """``hidden_size: ~`` is 128 and ``w_nid: ~`` 0 (no NID head) for text alone from a frozen, cached encoder; 64
    and 0.1 with an image or trainable text blocks; ``inner_size: ~`` is 4x the width, the given one included;
    values set by the user are kept."""
    unset = {"hidden_size": None, "inner_size": None, "w_nid": None}
    config, text, *_ = build(synth, pmmrec_config, modalities=["text"], **unset)
    assert (config["hidden_size"], config["inner_size"], config["w_nid"]) == (128, 512, 0.0)
    assert text.hidden_size == 128 and "nid" not in text.heads and text.architecture()["inner_size"] == 512
    for overrides in ({}, {"modalities": ["text"], "text_train_layers": 1}):
        config, model, *_ = build(synth, pmmrec_config, **unset, **overrides)
        assert (config["hidden_size"], config["inner_size"], config["w_nid"]) == (64, 256, 0.1), overrides
        assert "nid" in model.heads
    config, kept, *_ = build(synth, pmmrec_config, modalities=["text"], hidden_size=48, inner_size=None, w_nid=0.2)
    assert (config["hidden_size"], config["inner_size"], config["w_nid"]) == (48, 192, 0.2) and "nid" in kept.heads


def test_dropout_unset_follows_the_modalities(synth, pmmrec_config, caplog):
    """``hidden_dropout_prob: ~`` and ``attn_dropout_prob: ~`` are 0.3 for text alone from a frozen, cached encoder
    and 0.1 otherwise, in the user encoder's dropout layers; the decision is logged; a value set by the user wins."""
    unset = {"hidden_dropout_prob": None, "attn_dropout_prob": None}

    def rates(model):
        return sorted({m.p for m in model.user_encoder.modules() if isinstance(m, torch.nn.Dropout)})

    with caplog.at_level(logging.INFO):
        config, text, *_ = build(synth, pmmrec_config, modalities=["text"], **unset)
    assert (config["hidden_dropout_prob"], config["attn_dropout_prob"]) == (0.3, 0.3) and rates(text) == [0.3]
    assert any("hidden_dropout_prob=0.3" in r.getMessage() and "text alone" in r.getMessage() for r in caplog.records)
    for overrides in ({}, {"modalities": ["text"], "text_train_layers": 1}):
        config, model, *_ = build(synth, pmmrec_config, **unset, **overrides)
        assert (config["hidden_dropout_prob"], config["attn_dropout_prob"]) == (0.1, 0.1), overrides
        assert rates(model) == [0.1]
    config, kept, *_ = build(synth, pmmrec_config, modalities=["text"], hidden_dropout_prob=0.2, attn_dropout_prob=None)
    assert (config["hidden_dropout_prob"], config["attn_dropout_prob"]) == (0.2, 0.3) and rates(kept) == [0.2, 0.3]


@pytest.mark.parametrize("kind", ["center", "zca"])
def test_whiten_feeds_the_projection_the_catalogues_whitened_pooled_states(synth, pmmrec_config, kind):
    """``whiten``: one frozen modality's pooled states are centred (``center``) or also decorrelated (``zca``) with
    the catalogue's statistics before the projection; items added later (recommend.py's path) reuse those
    statistics, so a catalogue item recomputed as a new one gets the same vector."""
    _, plain, train, *_ = build(synth, pmmrec_config, modalities=["text"], whiten="raw")
    _, model, train, *_ = build(synth, pmmrec_config, modalities=["text"], whiten=kind)
    raw = plain.item_tower.pooled_states.float()
    has = train._dataset.item_features.has_text.bool()
    states = model.item_tower.pooled_states[has].double()
    assert states.mean(dim=0).abs().max() < 1e-4  # centred on the items with text
    cov = torch.cov(states.t())
    if kind == "center":  # a shift and one scale: the states' differences keep their directions
        diff_w, diff_r = states[1:] - states[:1], raw[has][1:].double() - raw[has][:1].double()
        ratio = diff_w.norm(dim=1) / diff_r.norm(dim=1)
        assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-3)
        assert abs(float(cov.diagonal().mean()) - 1.0) < 1e-3
    else:  # decorrelated: the covariance's eigenvalues are l / (l + 0.1 mean(l)), all below 1
        values = torch.linalg.eigvalsh(cov)
        assert float(values.max()) < 1.0 + 1e-4
        assert float(values.max() - values[-min(5, len(values)):].min()) < float(values.max() - values.min())
        raw_values = torch.linalg.eigvalsh(torch.cov(raw[has].double().t()))
        assert float(values.max() / values.clamp(min=1e-9)[-10:].min()) < float(
            raw_values.max() / raw_values.clamp(min=1e-9)[-10:].min())  # the top of the spectrum is flatter
    assert model.architecture()["whiten"] == kind and plain.architecture()["whiten"] == "raw"
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.vectors_of(train._dataset.item_features)[1:], model.item_vectors()[1:],
                                   rtol=1e-4, atol=1e-5)
    loss = model.calculate_loss(first_batch(train))
    assert torch.isfinite(loss)


def test_whiten_unset_is_zca_for_one_frozen_modality_and_whitens_fused_text_groups_when_set(synth, pmmrec_config):
    """``whiten: ~`` decides zca for frozen, cached text alone and raw otherwise (logged); set with text + image it
    whitens the frozen text groups with the pooled text states' statistics (a text-only checkpoint's projection
    moves into a fused model), padding groups stay zero; trainable text blocks are an error that names the key."""
    from recbole_pmmrec.errors import PMMRecConfigError
    from recbole_pmmrec.model.similarity import whitening

    config, text, *_ = build(synth, pmmrec_config, modalities=["text"], whiten=None)
    assert config["whiten"] == "zca" and text.item_tower.whiten == "zca"
    config, fused, train, *_ = build(synth, pmmrec_config, whiten=None)
    assert config["whiten"] == "raw"
    config, image, *_ = build(synth, pmmrec_config, modalities=["image"], whiten=None)
    assert config["whiten"] == "raw" and image.item_tower.pooled == "image"  # not measured with images: raw
    _, raw, *_ = build(synth, pmmrec_config, whiten="raw")
    _, zca, *_ = build(synth, pmmrec_config, whiten="zca")
    features = train._dataset.item_features
    mean, matrix = whitening(features.pooled("text").float(), "zca", features.has_text.bool())
    (raw_tokens, mask, _), (zca_tokens, zca_mask, _) = raw.item_tower.text_grouped, zca.item_tower.text_grouped
    assert torch.equal(mask, zca_mask) and bool(mask.any()) and bool((~mask).any())
    expected = ((raw_tokens.float() - mean) @ matrix) * mask[..., None]
    torch.testing.assert_close(zca_tokens.float(), expected, rtol=2e-3, atol=2e-3)
    assert float(zca_tokens[~mask].abs().max()) == 0.0
    with pytest.raises(PMMRecConfigError, match="whiten"):
        build(synth, pmmrec_config, whiten="zca", text_train_layers=1)


def test_nip_negatives_join_the_batch_from_the_trained_items_only(synth, pmmrec_config):
    """``nip_negatives: M``: each step draws M items uniformly from those with a training interaction (never a cold
    item) and scores every query against them too: the loss is nip_loss with those extra candidates (NICL still
    compares the batch's items only), and differs from the in-batch loss of the same weights."""
    from recbole_pmmrec.model.losses import nicl_loss, nip_loss

    _, model, train, *_ = build(synth, pmmrec_config, nip_negatives=64, cold_item_ratio=0.2, w_nid=0, w_rcl=0)
    counts = train._dataset.item_features.train_item_counts
    assert torch.equal(model.negative_pool, torch.nonzero(counts[1:] > 0).flatten() + 1)
    assert (counts[1:] == 0).any()  # there are cold items to keep out
    batch = first_batch(train)
    model.eval()
    torch.manual_seed(7)
    with torch.no_grad():
        loss = model.calculate_loss(batch)
    torch.manual_seed(7)
    extra = model.negative_pool[torch.randint(model.negative_pool.numel(), (64,))]
    with torch.no_grad():
        ids = batch["window"]
        vecs = model.item_vectors()
        out = model.user_encoder(vecs[ids[:, :-1]], ids[:, :-1] > 0)
        want = nip_loss(out, vecs[ids], ids, model.log_q, vecs[extra], extra, model.negative_pool.numel())
        if model.w_nicl > 0:
            uniq, inverse = torch.unique(ids, return_inverse=True)
            items = model.item_tower(uniq)
            head = model.heads["nicl"]
            want = want + model.w_nicl * nicl_loss(head(items.text_vec), head(items.image_vec), items.has_text,
                                                   items.has_image, ids, inverse, model.nicl_tau)
    assert torch.allclose(loss, want, atol=1e-5)
    _, plain, *_ = build(synth, pmmrec_config, cold_item_ratio=0.2, w_nid=0, w_rcl=0)
    plain.eval()
    with torch.no_grad():
        assert not torch.allclose(plain.calculate_loss(batch), loss)


def test_nip_history_negatives_make_the_users_earlier_items_negatives(synth, pmmrec_config):
    """``nip_history_negatives: True`` (off by default, also where the history is ranked): the loss is nip_loss with
    the user's earlier items as negatives, which differs from the default's."""
    from recbole_pmmrec.model.losses import nip_loss

    _, ranked, train, *_ = build(synth, pmmrec_config, exclude_history=False, nip_history_negatives=True, w_nid=0,
                                 w_nicl=0)
    _, default, *_ = build(synth, pmmrec_config, exclude_history=False, w_nid=0, w_nicl=0)
    assert ranked.history_negatives is True and default.history_negatives is False
    batch = first_batch(train)
    ranked.eval()
    with torch.no_grad():
        ids = batch["window"]
        vecs = ranked.item_vectors()
        out = ranked.user_encoder(vecs[ids[:, :-1]], ids[:, :-1] > 0)
        if ranked.skip is not None:
            out = torch.cat([out, ranked.skip.queries(ranked.skip.catalogue[ids][:, :-1])], dim=-1)
        want = nip_loss(out, vecs[ids], ids, ranked.log_q, history_negatives=True)
        assert torch.allclose(ranked.calculate_loss(batch), want, atol=1e-5)
        assert not torch.allclose(nip_loss(out, vecs[ids], ids, ranked.log_q), want)


def test_items_without_an_id_row_borrow_their_content_neighbours_rows(synth, pmmrec_config):
    """``item_id_neighbours: k``: in evaluation a cold item's vector is its content vector plus the mean ID row
    of the k warm items whose content vectors have the highest cosine with its own; warm items and training are
    unchanged; an item added later (``vectors_of``) borrows the same way."""
    import torch.nn.functional as F

    k = 3
    _, model, train, *_ = build(synth, pmmrec_config, item_id_embedding=True, item_id_neighbours=k,
                                cold_item_ratio=0.2)
    features = train._dataset.item_features
    with torch.no_grad():
        model.item_id_embedding.weight.normal_()  # rows far apart, so that borrowing is visible
    model.eval()
    with torch.no_grad():
        ids = torch.arange(model.n_items)
        content = model.item_tower(ids).vectors.float()
        rows = model.item_id_embedding.weight
        vecs = model.item_vectors()[:, :model.hidden_size]
    warm = model.id_warm.clone()
    cold = (~warm).nonzero().flatten()
    cold = cold[cold > 0]
    assert len(cold) > 0 and warm.sum() >= k
    torch.testing.assert_close(vecs[warm], content[warm] + rows[warm])
    warm_ids = warm.nonzero().flatten()
    for i in cold.tolist():
        sims = F.cosine_similarity(content[i][None], content[warm_ids], dim=-1)
        nearest = warm_ids[sims.topk(k).indices]
        torch.testing.assert_close(vecs[i], content[i] + rows[nearest].mean(0), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(vecs[i], content[i])
    # the catalogue's items passed as new ones: a cold item gets the same vector as in the catalogue
    with torch.no_grad():
        as_new = model.vectors_of(features)[:, :model.hidden_size]
    torch.testing.assert_close(as_new[cold], vecs[cold], rtol=1e-4, atol=1e-5)
    # training vectors: content + own row for warm items, content only for cold ones
    model.train()
    with torch.no_grad():
        torch.manual_seed(0)
        trained = model.encode_items(cold).vectors
        torch.manual_seed(0)  # the same dropout masks
        torch.testing.assert_close(trained, model.item_tower(cold).vectors)


def test_item_id_dropout_leaves_out_whole_id_rows_in_training_only(synth, pmmrec_config):
    """``item_id_dropout: p``: in training each warm item of a call goes without its ID row (the whole row, no
    rescaling) with probability p; evaluation always adds it; cold items never have one."""
    _, model, train, *_ = build(synth, pmmrec_config, item_id_embedding=True, item_id_dropout=0.5)
    with torch.no_grad():
        model.item_id_embedding.weight.normal_()
    warm = model.id_warm.nonzero().flatten()
    warm = warm[warm > 0]
    assert warm.numel() >= 20
    rows = model.item_id_embedding.weight[warm]
    model.train()
    with torch.no_grad():
        torch.manual_seed(1)
        trained = model.encode_items(warm).vectors
        torch.manual_seed(1)  # the same dropout masks in the item tower
        content = model.item_tower(warm).vectors
    added = trained - content
    kept = torch.isclose(added, rows, atol=1e-5).all(dim=1)
    dropped = torch.isclose(added, torch.zeros_like(added), atol=1e-5).all(dim=1)
    assert bool((kept ^ dropped).all())  # each item has its whole row or none of it
    assert 0 < int(dropped.sum()) < warm.numel()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_items(warm).vectors - model.item_tower(warm).vectors, rows,
                                   atol=1e-5, rtol=1e-4)
    model.train()
    loss = model.calculate_loss(first_batch(train))
    assert torch.isfinite(loss)


def test_item_id_dropout_must_be_a_probability_below_one(synth, pmmrec_config):
    with pytest.raises(Exception, match="item_id_dropout"):
        build(synth, pmmrec_config, item_id_embedding=True, item_id_dropout=1.0)


def test_item_id_learning_rate_gives_the_id_rows_their_own_optimiser_group(synth, pmmrec_config):
    """``item_id_learning_rate``: the ID rows form their own group at that rate (same weight decay); ~ leaves them
    with the rest of the model."""
    _, model, *_ = build(synth, pmmrec_config, item_id_embedding=True, item_id_learning_rate=3e-4)
    groups = {g["name"]: g for g in model.parameter_groups(1e-3, 0.1, 1e-4, 0.0)}
    assert groups["item_ids"]["lr"] == 3e-4 and groups["item_ids"]["weight_decay"] == 0.1
    assert [p is model.item_id_embedding.weight for p in groups["item_ids"]["params"]] == [True]
    assert all(p is not model.item_id_embedding.weight for p in groups["recommender"]["params"])
    counted = sum(p.numel() for g in groups.values() for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters() if p.requires_grad)
    _, plain, *_ = build(synth, pmmrec_config, item_id_embedding=True)
    groups = {g["name"]: g for g in plain.parameter_groups(1e-3, 0.1, 1e-4, 0.0)}
    assert "item_ids" not in groups
    assert any(p is plain.item_id_embedding.weight for p in groups["recommender"]["params"])


def test_item_id_shrink_scales_each_id_row_by_its_items_training_count(synth, pmmrec_config):
    """``item_id_shrink: c``: an item with n training interactions adds n / (n + c) of its ID row, in training
    and in evaluation; cold items (n = 0) add none."""
    c = 4.0
    _, model, train, *_ = build(synth, pmmrec_config, item_id_embedding=True, item_id_shrink=c, cold_item_ratio=0.2)
    with torch.no_grad():
        model.item_id_embedding.weight.normal_()
    n = train._dataset.item_features.train_item_counts.float()
    ids = torch.arange(1, model.n_items)
    model.eval()
    with torch.no_grad():
        added = model.encode_items(ids).vectors - model.item_tower(ids).vectors
    expected = model.item_id_embedding.weight[ids] * (n[ids] / (n[ids] + c))[:, None]
    torch.testing.assert_close(added, expected, atol=1e-5, rtol=1e-4)
    assert bool((n[ids] == 0).any()) and bool((n[ids] > 0).any())
    assert torch.allclose(added[n[ids] == 0], torch.zeros(1))
    model.train()
    assert torch.isfinite(model.calculate_loss(first_batch(train)))


def test_score_tau_unset_is_cosine_on_frozen_cached_text_alone(synth, pmmrec_config, caplog):
    """``score_tau: ~`` decides DEFAULT_TEXT_SCORE_TAU (cosine scores) on text alone from a frozen, cached encoder,
    with or without ``item_id_embedding``, logged and written back to the config; 0 (dot products) with an image or
    with trainable text blocks; a value set by the user is kept."""
    from recbole_pmmrec.model.item_tower import DEFAULT_TEXT_SCORE_TAU

    for overrides in ({"modalities": ["text"]}, {"modalities": ["text"], "item_id_embedding": True}):
        caplog.clear()
        with caplog.at_level(logging.INFO):
            config, model, *_ = build(synth, pmmrec_config, score_tau=None, **overrides)
        assert config["score_tau"] == model.score_tau == DEFAULT_TEXT_SCORE_TAU > 0, overrides
        assert any(f"score_tau={DEFAULT_TEXT_SCORE_TAU}" in r.getMessage() and "frozen, cached text alone"
                   in r.getMessage() for r in caplog.records), overrides
    for overrides in ({}, {"item_id_embedding": True}, {"modalities": ["text"], "text_train_layers": 1},
                      {"modalities": ["text"], "item_id_embedding": True, "text_train_layers": 1}):
        config, model, *_ = build(synth, pmmrec_config, score_tau=None, **overrides)
        assert config["score_tau"] == model.score_tau == 0.0, overrides
    config, kept, *_ = build(synth, pmmrec_config, modalities=["text"], score_tau=0.0)
    assert config["score_tau"] == kept.score_tau == 0.0
