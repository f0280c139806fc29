"""bench/suite/labels.py: the registry names only settings the package has, and stored runs render from their
own spec (today's setting of a label, or history)."""

import pytest

from bench.suite import labels

LEFT_THE_PACKAGE = ("text_tokens", "item_feature_dropout", "modality_dropout", "text_skip", "image_skip")


def test_every_label_sets_keys_the_package_reads():
    from recbole_pmmrec.config import known_keys

    known = known_keys()
    for label in [*labels.PMMREC, *labels.BASELINES]:
        model, keys = labels.model_of(label)
        assert not set(keys) & set(LEFT_THE_PACKAGE), label
        if model == "PMMRec":
            assert set(keys) <= known, (label, set(keys) - known)
    for label in labels.QUALITY_ORDER + labels.COLD_ORDER:
        labels.model_of(label)  # every label of a part is in the registry


def _run(label, model, **keys):
    return {"label": label, "spec": {"model": model, "config": {"seed": 2020, "data_path": "/d", "epochs": 40,
                                                                "cold_item_ratio": 0.1, **keys}}}


def _on(dataset, label, **keys):
    """A stored PMMRec run of ``label`` on ``dataset`` with config ``keys``."""
    run = _run(label, "PMMRec", **keys)
    run["spec"]["dataset"] = dataset
    return run


def test_a_stored_run_is_current_only_with_its_labels_keys_of_today():
    assert labels.overrides_of(_run("x", "PMMRec", projection="mlp")["spec"]) == {"projection": "mlp"}
    assert labels.is_current(_run("PMMRec", "PMMRec"))
    assert labels.is_current(_run("PMMRec coarse fusion", "PMMRec", image_grid=1, text_groups=1))
    assert not labels.is_current(_run("PMMRec coarse fusion", "PMMRec", image_grid=1, text_tokens=1))  # renamed since
    assert not labels.is_current(_run("PMMRec", "PMMRec", text_tokens=None))  # an older default under today's label
    assert not labels.is_current(_run("PMMRec v0.2 dropout 0.5", "PMMRec", hidden_dropout_prob=0.5))
    assert not labels.is_current(_run("PMMRec text skip", "PMMRec", text_skip=True))
    sel = _run("SASRec hr-selected", "SASRec")
    assert not labels.is_current(sel)  # the selection rule is part of the setting
    sel["spec"]["select"] = "history_removed"
    assert labels.is_current(sel)


@pytest.mark.parametrize("dataset,row", [("ml100k-posters", "PMMRec"), ("microlens-50k", "PMMRec on microlens-50k")])
def test_runs_on_another_data_set_get_a_row_of_their_own(dataset, row):
    run = _run("PMMRec", "PMMRec")
    run["spec"]["dataset"] = dataset
    assert labels.run_label(run) == row


def test_whiten_default_relabels_explicit_zca_runs_on_text_data_and_makes_raw_ones_history():
    """Since whiten ~ became the default, an explicit ``whiten: zca`` run on one frozen text modality is today's
    label without it; the runs that ran with the old raw default carry ``whiten: raw`` and are history; on text +
    image data (~ = raw) an explicit zca stays its own setting."""
    zca = _on("seqrec-toys", "PMMRec whiten zca", whiten="zca")
    assert labels.canonical_label(zca) == "PMMRec" and labels.is_current(dict(zca, label="PMMRec"))
    assert not labels.is_current(_on("seqrec-toys", "PMMRec", whiten="raw"))
    text = _on("ml100k-posters", "PMMRec text-only whiten zca", modalities=["text"], projection="mlp", whiten="zca")
    assert labels.canonical_label(text) == "PMMRec text-only"
    fused = _on("ml100k-posters", "PMMRec whiten zca", whiten="zca")
    assert labels.canonical_label(fused) == "PMMRec whiten zca" and labels.is_current(fused)
    assert labels.is_current(_on("ml100k-posters", "PMMRec", whiten="raw"))  # ~ resolves to raw with two modalities
    trained = _on("seqrec-toys", "PMMRec whiten zca", whiten="zca", text_train_layers=1)
    assert labels.canonical_label(trained) == "PMMRec whiten zca"


def test_width_and_nid_defaults_relabel_d128_runs_on_text_data_and_make_stamped_ones_history():
    """Since hidden_size ~ (128, inner_size 4x) and w_nid ~ (0) follow frozen, cached text alone, a "d128 w/o NID"
    run on text is today's default (and with the item ID, today's item-ID label); runs stamped with the 0.6 values
    they ran with (64, 256, 0.1) are history; with text + image d128 stays its own setting."""
    d128 = {"hidden_size": 128, "inner_size": 512, "w_nid": 0.0}
    old = {"hidden_size": 64, "inner_size": 256, "w_nid": 0.1}

    assert labels.canonical_label(_on("seqrec-toys", "PMMRec d128 w/o NID", **d128)) == "PMMRec"
    assert labels.canonical_label(_on("seqrec-toys", "PMMRec with item ID d128 w/o NID", item_id_embedding=True,
                                      **d128)) == "PMMRec with item ID"
    text = _on("ml100k-posters", "PMMRec text-only d128 w/o NID", modalities=["text"], projection="mlp", **d128)
    assert labels.canonical_label(text) == "PMMRec text-only"
    assert not labels.is_current(_on("seqrec-toys", "PMMRec", **old))
    assert labels.canonical_label(_on("seqrec-toys", "PMMRec", **old)) == "PMMRec d64 with NID"  # 0.6's default
    assert labels.canonical_label(_on("seqrec-toys", "PMMRec")) == "PMMRec"
    assert labels.is_current(_on("ml100k-posters", "PMMRec", **old))  # two modalities: 64 / 256 / 0.1 are today's
    fused = _on("ml100k-posters", "PMMRec d128 w/o NID", **d128)
    assert labels.canonical_label(fused) == "PMMRec d128 w/o NID" and labels.is_current(fused)


def test_dropout_default_relabels_dropout_runs_on_text_data_and_names_stamped_ones():
    """Since hidden_dropout_prob / attn_dropout_prob ~ are 0.3 for frozen, cached text alone, a "dropout 0.3" run on
    text is today's default and one on text + image stays its own setting; a 0.7 run stamped with the 0.1 it ran
    with is named by the label for that (default, item ID, text-only), not taken for today's default."""
    d3, d1 = {"hidden_dropout_prob": 0.3, "attn_dropout_prob": 0.3}, {"hidden_dropout_prob": 0.1,
                                                                          "attn_dropout_prob": 0.1}
    d128 = {"hidden_size": 128, "inner_size": 512, "w_nid": 0.0}

    assert labels.canonical_label(_on("seqrec-toys", "PMMRec dropout 0.3", **d3)) == "PMMRec"
    assert labels.canonical_label(_on("ml100k-posters", "PMMRec text-only dropout 0.3", modalities=["text"],
                                      projection="mlp", **d3)) == "PMMRec text-only"
    fused = _on("ml100k-posters", "PMMRec dropout 0.3", **d3)
    assert labels.canonical_label(fused) == "PMMRec dropout 0.3" and labels.is_current(fused)
    assert labels.is_current(_on("ml100k-posters", "PMMRec", **d1))  # 0.1 is still the default with an image
    stamped = _on("seqrec-toys", "PMMRec", **d1)
    assert not labels.is_current(stamped) and labels.canonical_label(stamped) == "PMMRec dropout 0.1"
    assert labels.canonical_label(_on("seqrec-toys", "PMMRec d128 w/o NID", **d128, **d1)) == "PMMRec dropout 0.1"
    assert labels.canonical_label(_on("seqrec-toys", "PMMRec with item ID", item_id_embedding=True,
                                      **d1)) == "PMMRec with item ID dropout 0.1"
    assert labels.canonical_label(_on("seqrec-toys", "PMMRec with item ID")) == "PMMRec with item ID"


def test_score_tau_default_relabels_cosine_runs_on_text_data_and_names_stamped_ones_dot_products():
    """Since score_tau ~ is 0.1 for frozen, cached text alone (with or without the ID), a "cosine 0.1" run on text
    is today's default and one on text + image stays its own setting; a run stamped with the dot products it ran
    with is named by its label plus "dot products" (any label, and after the older renames)."""
    d1 = {"hidden_dropout_prob": 0.1, "attn_dropout_prob": 0.1}
    cosine = _on("seqrec-toys", "PMMRec cosine 0.1", score_tau=0.1)
    assert labels.canonical_label(cosine) == "PMMRec" and labels.is_current(dict(cosine, label="PMMRec"))
    fused = _on("ml100k-posters", "PMMRec cosine 0.1", score_tau=0.1)
    assert labels.canonical_label(fused) == "PMMRec cosine 0.1" and labels.is_current(fused)
    assert labels.is_current(_on("ml100k-posters", "PMMRec", score_tau=0.0))  # 0 is still the default with images
    for label, keys, named in [
            ("PMMRec", {}, "PMMRec dot products"),
            ("PMMRec skip zca 384", {"knn_whiten": "zca", "content_skip_dim": 384}, "PMMRec skip zca 384 dot products"),
            ("PMMRec", d1, "PMMRec dropout 0.1 dot products"),  # a 0.7 default run, stamped twice
            ("PMMRec dropout 0.3", {"hidden_dropout_prob": 0.3, "attn_dropout_prob": 0.3}, "PMMRec dot products"),
            ("PMMRec with item ID", {"item_id_embedding": True}, "PMMRec with item ID dot products")]:
        stamped = _on("seqrec-toys", label, score_tau=0.0, **keys)
        assert not labels.is_current(dict(stamped, label="PMMRec")), label
        assert labels.canonical_label(stamped) == named, label
        assert labels.is_current(dict(stamped, label=named)), label
    text = _on("ml100k-posters", "PMMRec text-only", modalities=["text"], projection="mlp", score_tau=0.0)
    assert labels.canonical_label(text) == "PMMRec text-only dot products"


def test_batch_default_relabels_by_what_it_resolved_to_on_the_runs_data():
    """train_batch_size ~ resolves from the data (``spec["resolved"]``, recorded by the worker): a "batch 256"
    run where ~ gave 256 is today's default; where ~ gave 64 it stays its own setting; a run that ran with the old
    fixed 64 where ~ now gives 256 is history."""
    def on(dataset, label, resolved, **keys):
        run = _on(dataset, label, **keys)
        run["spec"]["resolved"] = {"train_batch_size": resolved}
        return run

    short = on("seqrec-toys", "PMMRec batch 256", 256, train_batch_size=256)
    assert labels.canonical_label(short) == "PMMRec" and labels.is_current(dict(short, label="PMMRec"))
    long = on("ml100k-posters", "PMMRec batch 256", 64, train_batch_size=256)
    assert labels.canonical_label(long) == "PMMRec batch 256" and labels.is_current(long)
    assert labels.is_current(on("ml100k-posters", "PMMRec", 64, train_batch_size=64))
    assert not labels.is_current(on("seqrec-toys", "PMMRec", 256, train_batch_size=64))
    assert labels.overrides_of(_run("PMMRec", "PMMRec", train_batch_size=64)["spec"]) == {"train_batch_size": 64}


def test_stamp_gives_runs_made_with_older_defaults_the_values_they_ran_with():
    """``bench/run.py stamp``: only runs of the model made before today's defaults, only keys they did not set, and
    only where today's default on that run's data differs from the old value."""
    from bench.suite.labels import stamp

    def run(dataset, digest, model="PMMRec", **config):
        return {"label": model, "defaults": digest, "spec": {"model": model, "dataset": dataset, "config": config}}

    old_text, old_set = run("seqrec-toys", "old"), run("seqrec-toys", "old", w_nid=0.5)
    old_image = run("ml100k-posters", "old")
    new_text, sasrec = run("seqrec-toys", "today"), run("seqrec-toys", "old", model="SASRec")
    runs = [old_text, old_set, old_image, new_text, sasrec]
    changed = stamp(runs, "PMMRec", {"hidden_size": 64, "w_nid": 0.1}, lambda model, dataset: "today")
    # text alone defaults to d 128 without NID today; text + image still to d 64 with NID 0.1: nothing to stamp
    assert [(r["spec"]["dataset"], added) for r, added in changed] == [
        ("seqrec-toys", {"hidden_size": 64, "w_nid": 0.1}), ("seqrec-toys", {"hidden_size": 64})]
    assert old_set["spec"]["config"] == {"w_nid": 0.5, "hidden_size": 64}  # its own value kept
    assert new_text["spec"]["config"] == {} and sasrec["spec"]["config"] == {} and old_image["spec"]["config"] == {}
    assert stamp(runs, "PMMRec", {"hidden_size": 64, "w_nid": 0.1}, lambda model, dataset: "today") == []  # once


def test_stamp_reads_a_recbole_baselines_defaults_from_recbole_own_properties():
    """A baseline with no properties file in the plugin (SASRec) takes its defaults from RecBole's: a key whose
    RecBole default is still the old value is not stamped; one that differs is."""
    from bench.suite.labels import stamp

    run = {"label": "SASRec", "defaults": "old", "spec": {"model": "SASRec", "dataset": "seqrec-toys", "config": {}}}
    changed = stamp([run], "SASRec", {"hidden_dropout_prob": 0.5, "layer_norm_eps": 1e-12, "n_layers": 3},
                    lambda model, dataset: "today")
    assert [added for _, added in changed] == [{"n_layers": 3}]


def test_stamp_every_digest_and_where_reach_a_default_changed_in_the_code():
    """``stamp --every-digest --where KEY=VALUE``: a default that changed in the package's code leaves the
    properties' digest as it was, so runs made with today's digest are stamped too, and ``where`` keeps it to the
    runs that ran with the old value (here the ID-free ones: an unset ``item_id_embedding`` counts as today's
    default, False)."""
    from bench.suite.labels import stamp

    def run(dataset, **config):
        return {"label": "PMMRec", "defaults": "today", "spec": {"model": "PMMRec", "dataset": dataset,
                                                                 "config": config}}

    free, with_id, image = run("seqrec-toys"), run("seqrec-toys", item_id_embedding=True), run("ml100k-posters")
    cosine = run("seqrec-toys", score_tau=0.1)
    runs = [free, with_id, image, cosine]
    digest = lambda model, dataset: "today"  # noqa: E731
    assert stamp(runs, "PMMRec", {"score_tau": 0.0}, digest, where={"item_id_embedding": False}) == []
    changed = stamp(runs, "PMMRec", {"score_tau": 0.0}, digest, where={"item_id_embedding": False},
                    every_digest=True)
    assert [r for r, _ in changed] == [free] and free["spec"]["config"] == {"score_tau": 0.0}
    assert with_id["spec"]["config"] == {"item_id_embedding": True} and image["spec"]["config"] == {}
    assert cosine["spec"]["config"] == {"score_tau": 0.1}
