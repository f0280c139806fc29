"""recbole_pmmrec/recommend.py: from a model file to recommendations, new items without retraining."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from recbole.utils import init_seed
from recbole.utils.case_study import full_sort_topk

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError, PMMRecDataError
from recbole_pmmrec.quick_start import load_config
from recbole_pmmrec.recommend import Recommender, main, topk_by_id
from recbole_pmmrec.synthetic import make_synthetic_dataset
from recbole_pmmrec.transfer import HEADER_FILE, save_pretrained
from recbole_pmmrec.utils import create_dataset, data_preparation, get_model, get_trainer

HELD_OUT = "7"  # the item left out of the "held" data set, added later as a new item
MODALITY_SETS = {"text": ["text"], "image": ["image"], "text+image": ["text", "image"]}


class World:
    """A full synthetic data set and a copy without item 7 ("held"), models saved from "held" (one trained
    1 epoch with text + image, untrained ones per modality setting: the weights only need to be fixed)."""

    def __init__(self, root: Path, bert_dir: Path):
        import timm
        from safetensors.torch import save_file

        self.root = root
        self.full = make_synthetic_dataset(root / "data", name="full", n_users=40, n_items=60, seed=0)
        held = root / "data" / "held"
        (held / "held.images").mkdir(parents=True)
        for suffix in ("inter", "item"):
            lines = (self.full.folder / f"full.{suffix}").read_text().splitlines(keepends=True)
            kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[int(suffix == "inter")] != HELD_OUT]
            (held / f"held.{suffix}").write_text("".join(kept))
        for image in (self.full.folder / "full.images").iterdir():
            if image.stem != HELD_OUT:
                shutil.copy(image, held / "held.images" / image.name)
        torch.manual_seed(0)  # one frozen image bottom for every model, as with real pretrained weights
        image_ckpt = root / "efficientnet_lite0.safetensors"
        save_file(timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).state_dict(),
                  str(image_ckpt))
        self.base = {
            "data_path": str(root / "data"), "epochs": 1, "show_progress": False, "use_gpu": False,
            "state": "WARNING", "train_batch_size": 16, "eval_batch_size": 64, "MAX_ITEM_LIST_LENGTH": 10,
            "checkpoint_dir": str(root / "saved"), "log_dir": str(root / "logs"), "tensorboard_dir": str(root / "tb"),
            "text_encoder": str(bert_dir), "text_max_length": 12, "text_fields": ["title", "description"],
            "image_encoder": "timm:efficientnet_lite0", "image_checkpoint": str(image_ckpt), "image_size": 32,
            "image_grid": 2, "hidden_size": 32, "inner_size": 64, "fusion_heads": 2, "cache_dir": str(root / "cache"),
            # whiten ~ is zca for text alone: its statistics are the loading catalogue's, so a new item's vector would
            # differ between the "held" and "full" catalogues by design (the whitened path: tests/model/test_pmmrec.py)
            "whiten": "raw",
            "content_skip": 0.0,  # likewise ~'s skip on text alone: its principal directions are the catalogue's
        }
        self._models = {}

    def config(self, modalities="text+image", **overrides) -> dict:
        return dict(self.base, modalities=MODALITY_SETS[modalities], **overrides)

    def model(self, modalities="text+image", trained=True):
        """(folder, config, model) saved with save_pretrained from data set "held"."""
        key = (modalities, trained)
        if key not in self._models:
            config = load_config("PMMRec", "held", config_dict=self.config(modalities))
            init_seed(config["seed"], config["reproducibility"])
            train, valid, _ = data_preparation(config, create_dataset(config))
            torch.manual_seed(1)
            model = get_model("PMMRec")(config, train._dataset)
            if trained:
                get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model).fit(train, valid, saved=False)
            folder = self.root / f"model-{modalities}-{'trained' if trained else 'fresh'}"
            save_pretrained(model, folder, config, ["held"])
            self._models[key] = (folder, config, model.eval())
        return self._models[key]

    def copy(self, dest: Path, modalities="text+image", trained=True) -> Path:
        """A copy of a model folder (new items are stored next to it: each test gets its own)."""
        return Path(shutil.copytree(self.model(modalities, trained)[0], dest))

    def load(self, folder, dataset="held", **kw) -> Recommender:
        return Recommender.load(folder, data_path=self.root / "data", dataset=dataset,
                                cache_dir=self.base["cache_dir"], **kw)

    def new_item_row(self) -> dict:
        lines = (self.full.folder / "full.item").read_text().splitlines()
        header = [h.split(":")[0] for h in lines[0].split("\t")]
        row = next(line.split("\t") for line in lines[1:] if line.split("\t")[0] == HELD_OUT)
        return dict(zip(header, row))


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_dir):
    return World(tmp_path_factory.mktemp("recommend"), tiny_bert_dir)


@pytest.fixture(scope="module")
def rec(world, tmp_path_factory):
    """The trained text + image model of "held", loaded from a copy of its folder."""
    return world.load(world.copy(tmp_path_factory.mktemp("rec") / "model"))


# -------------------------------------------------------------------------------- ranking


def test_topk_by_id_orders_ties_by_item_id():
    torch.manual_seed(0)
    scores = torch.randint(0, 4, (50, 30)).float()
    scores[:, 0] = float("-inf")
    values, index = topk_by_id(scores, 7)
    for row in range(scores.shape[0]):
        expected = sorted(range(30), key=lambda j: (-scores[row, j].item(), j))[:7]
        assert index[row].tolist() == expected
        assert values[row].tolist() == scores[row, expected].tolist()


def test_users_rank_exactly_as_recbole_full_sort_topk(world, rec):
    config = load_config("PMMRec", "held", config_dict=world.config())
    _, _, test_data = data_preparation(config, create_dataset(config))
    users = [f"u{i}" for i in range(1, 41)]
    uids = [rec.user_index[u] for u in users]
    assert test_data.dataset.field2id_token["user_id"][uids].tolist() == users  # the same internal ids
    values, index = full_sort_topk(uids, rec.model, test_data, k=10)
    ours = rec.recommend(users=users, k=10, split="test", batch_size=64)
    for r, rec_ in enumerate(ours):
        assert rec_.items == [rec.item_tokens[i] for i in index[r].tolist()], rec_.user
        torch.testing.assert_close(torch.tensor(rec_.scores), values[r], rtol=0, atol=0)
    # split="all" ranks from every interaction: the user's last L interactions, in time order
    lines = (world.root / "data" / "held" / "held.inter").read_text().splitlines()[1:]
    u3 = [line.split("\t")[1] for line in lines if line.split("\t")[0] == "u3"]
    assert rec.history("u3") == u3[-10:] and rec.history("u3", split="test") == u3[:-1][-10:]
    assert rec.recommend(users=["u3"])[0].history == u3[-10:]
    # a history given as items equals the user's own
    assert rec.recommend(histories=[u3])[0].items == rec.recommend(users=["u3"])[0].items


def test_history_candidates_and_exclusion(rec):
    history = rec.history("u5")
    top = rec.recommend(histories=[history], k=rec.n_items, exclude_history=True)[0]
    assert not set(top.items) & set(history) and len(top.items) == rec.n_items - len(set(history))
    assert top.scores == sorted(top.scores, reverse=True)
    with_history = rec.recommend(histories=[history], k=5, exclude_history=False)[0]
    assert len(with_history.items) == 5
    candidates = ["3", "9", "11", "40"]
    ranked = rec.recommend(histories=[history], k=3, candidates=candidates, exclude_history=False)[0]
    assert set(ranked.items) <= set(candidates) and len(ranked.items) == 3
    full = {i: s for i, s in zip(with_history.items, with_history.scores)}
    assert all(full.get(i, s) == s for i, s in zip(ranked.items, ranked.scores))


def test_similar_items_and_exported_vectors(rec, tmp_path):
    from safetensors import safe_open

    similar = rec.similar_items("3", k=5)
    tokens, vectors = rec.item_vectors()
    unit = torch.nn.functional.normalize(vectors, dim=1)
    sims = unit @ unit[tokens.index("3")]
    sims[tokens.index("3")] = -2
    assert similar.items == [tokens[i] for i in torch.argsort(sims, descending=True, stable=True)[:5].tolist()]
    path = rec.export_item_vectors(tmp_path / "vectors.safetensors")
    with safe_open(str(path), "pt") as fh:
        assert json.loads(fh.metadata()["items"]) == tokens
        torch.testing.assert_close(fh.get_tensor("item_vectors"), vectors, rtol=0, atol=0)
        assert not fh.get_tensor("is_new").any()


# -------------------------------------------------------------------------------- new items


@pytest.mark.parametrize("modalities,trained", [("text+image", True), ("text", False), ("image", False)])
def test_new_item_gets_the_vector_it_would_have_had(world, tmp_path, modalities, trained):
    folder = world.copy(tmp_path / "model", modalities, trained)
    held = world.load(folder)
    assert HELD_OUT not in held.item_index
    added = held.add_items([world.new_item_row()], image_dir=world.full.folder / "full.images")
    assert added == [HELD_OUT] and held.is_new(HELD_OUT) and held.new_items == [HELD_OUT]
    full = world.load(folder, dataset="full", allow_other_dataset=True, new_items=False)
    tokens_h, vectors_h = held.item_vectors()
    tokens_f, vectors_f = full.item_vectors()
    torch.testing.assert_close(vectors_h[tokens_h.index(HELD_OUT)], vectors_f[tokens_f.index(HELD_OUT)],
                               rtol=1e-5, atol=1e-5)
    # ranked at once: the same score for it in both catalogues
    history = held.history("u2")
    score_h = dict(zip(*[getattr(held.recommend(histories=[history], k=held.n_items)[0], a)
                         for a in ("items", "scores")]))
    score_f = dict(zip(*[getattr(full.recommend(histories=[history], k=full.n_items)[0], a)
                         for a in ("items", "scores")]))
    assert score_h[HELD_OUT] == pytest.approx(score_f[HELD_OUT], abs=1e-4)
    # stored next to the model (no pickle), back with a later load
    stored = folder.parent / f"{folder.name}.new_items"
    assert {p.name for p in stored.iterdir()} == {"items.tsv", "images", "states.safetensors", "meta.json"}
    again = world.load(folder)
    assert again.new_items == [HELD_OUT]
    torch.testing.assert_close(again.item_vectors()[1][-1], vectors_h[-1], rtol=0, atol=0)
    if modalities == "text+image":  # stored states made by other encoders are recomputed, not used
        meta = json.loads((stored / "meta.json").read_text())
        meta["encoders"]["text"]["bottom_sha256"] = "0" * 64
        (stored / "meta.json").write_text(json.dumps(meta))
        torch.testing.assert_close(world.load(folder).item_vectors()[1][-1], vectors_h[-1], rtol=1e-5, atol=1e-5)


def _saved_text_model(world, folder, **keys):
    """A fresh text-only PMMRec on the 'held' data set with ``keys``, saved to ``folder`` with save_pretrained:
    (model in eval mode, its test loader)."""
    config = load_config("PMMRec", "held", config_dict=world.config("text", **keys))
    init_seed(config["seed"], config["reproducibility"])
    train, _, test = data_preparation(config, create_dataset(config))
    model = get_model("PMMRec")(config, train._dataset).eval()
    save_pretrained(model, folder, config, ["held"])
    return model, test


def test_a_models_content_skip_is_recorded_and_loads_with_it_also_from_an_older_header(world, tmp_path):
    """A model with the content skip (text alone) records it in its header and is rebuilt with it for
    recommendations, scoring as trained; a header written before the key was recorded is read by its weights
    (the skip's weight is there or not), so neither kind of older folder fails to load or loads the wrong model."""
    folder = tmp_path / "skip"
    model, test = _saved_text_model(world, folder, content_skip=2.0)
    header = json.loads((folder / HEADER_FILE).read_text())
    assert header["config"]["content_skip"] == 2.0 and header["config"]["content_skip_dim"] == 64
    loaded = world.load(folder)
    assert loaded.model.skip is not None and float(loaded.model.skip.weight.detach()) == 2.0
    batch = next(iter(test))[0]
    with torch.no_grad():
        expected = model.full_sort_predict(batch)
        torch.testing.assert_close(loaded.model.full_sort_predict(batch), expected, rtol=1e-5, atol=1e-5)
    for saved, has_skip in ((folder, True), (world.copy(tmp_path / "plain", "text", trained=False), False)):
        older = json.loads((saved / HEADER_FILE).read_text())
        del older["config"]["content_skip"]
        (saved / HEADER_FILE).write_text(json.dumps(older))
        assert (world.load(saved).model.skip is not None) == has_skip


def test_a_models_score_tau_is_recorded_and_its_recommendations_score_as_trained(world, tmp_path):
    """A model trained with cosine scores (``score_tau``) records the key in its header, is rebuilt with it, and
    ranks for recommendations exactly as its evaluation did; a header without the key loads as dot products."""
    folder = tmp_path / "tau"
    model, test = _saved_text_model(world, folder, score_tau=0.1)
    assert json.loads((folder / HEADER_FILE).read_text())["config"]["score_tau"] == 0.1
    loaded = world.load(folder)
    assert loaded.model.score_tau == 0.1
    batch = next(iter(test))[0]
    seq, lengths = batch[model.ITEM_SEQ], batch[model.ITEM_SEQ_LEN]
    with torch.no_grad():
        expected = model.full_sort_predict(batch)[:, 1:]
    torch.testing.assert_close(loaded.scores(seq, lengths)[:, 1:expected.shape[1] + 1], expected, rtol=1e-5,
                               atol=1e-5)
    older = json.loads((folder / HEADER_FILE).read_text())
    del older["config"]["score_tau"]
    (folder / HEADER_FILE).write_text(json.dumps(older))
    assert world.load(folder).model.score_tau == 0.0


def test_new_items_from_a_folder_in_the_cli(world, tmp_path, capsys):
    folder = world.copy(tmp_path / "model")
    new = tmp_path / "new"
    (new / "images").mkdir(parents=True)
    row = world.new_item_row()
    (new / "items.item").write_text("item_id:token\ttitle:token_seq\tdescription:token_seq\n"
                                    f"{HELD_OUT}\t{row['title']}\t{row['description']}\n"
                                    "n1\tspace robots special\t\n")
    shutil.copy(world.full.folder / "full.images" / f"{HELD_OUT}.png", new / "images")
    args = [f"--model_file={folder}", f"--data_path={world.root / 'data'}", "--dataset=held",
            f"--cache_dir={world.base['cache_dir']}", f"--new_items={new}", "--format=json", "--k=70", "--exclude_history=True",
            "--history=1 2 3"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.splitlines()[0])
    items = {entry["item"]: entry for entry in out["items"]}
    assert items[HELD_OUT]["new"] and items["n1"]["new"] and items["n1"]["title"] == "space robots special"
    assert len(out["items"]) == 60 - 1 + 2 - 3  # the catalogue with the new items, without the history
    assert main(args) == 0  # the same items again: already there with the same content, skipped
    capsys.readouterr()


def test_bad_new_items_are_errors_naming_them(world, rec, tmp_path):
    with pytest.raises(PMMRecDataError, match=r"'blank' has neither text nor image"):
        rec.add_items([{"item_id": "blank", "title": "", "description": ""}], persist=False)
    with pytest.raises(PMMRecDataError, match=r"new item '3' already exists in data set 'held'"):
        rec.add_items([{"item_id": "3", "title": "something else"}], persist=False)
    with pytest.raises(PMMRecDataError, match="more than once"):
        rec.add_items([{"item_id": "z", "title": "a"}, {"item_id": "z", "title": "b"}], persist=False)
    with pytest.raises(PMMRecDataError, match="cannot be used"):
        rec.add_items([{"item_id": "../x", "title": "a"}], persist=False)
    assert rec.new_items == []


# -------------------------------------------------------------------------------- bad input


def test_unknown_user_names_it_and_says_how_to_pass_a_history(rec):
    with pytest.raises(PMMRecDataError, match=r"unknown user 'nobody'.*histories=\[\[item"):
        rec.recommend(users=["u1", "nobody"])


def test_unknown_history_items_are_counted_and_skipped_or_strict(rec, caplog):
    with caplog.at_level(logging.WARNING):
        out = rec.recommend(histories=[["1", "zzz", "2", "yyy"]], k=3)[0]
    assert out.skipped == ["zzz", "yyy"] and out.history == ["1", "2"] and "2 of 4 items" in caplog.text
    with pytest.raises(PMMRecDataError, match="2 of 4 items are not in the catalogue"):
        rec.recommend(histories=[["1", "zzz", "2", "yyy"]], strict=True)
    with pytest.raises(PMMRecDataError, match="no item of the catalogue"):
        rec.recommend(histories=[["zzz"]])


def test_k_above_the_catalogue_is_clamped_with_a_warning(rec, caplog):
    with caplog.at_level(logging.WARNING):
        out = rec.recommend(histories=[["1"]], k=1000, exclude_history=True)[0]
    assert "k=1000 is more than the 59 items" in caplog.text
    assert len(out.items) == 58  # every item but the history's one


def test_model_file_of_another_dataset_or_encoder_is_an_error(world, tmp_path):
    folder = world.model()[0]
    with pytest.raises(PMMRecCheckpointError, match="trained on data set 'held', not 'full'.*allow_other_dataset"):
        world.load(folder, dataset="full")
    other = world.copy(tmp_path / "other")
    header = json.loads((other / HEADER_FILE).read_text())
    header["encoders"]["text"]["bottom_sha256"] = "f" * 64
    (other / HEADER_FILE).write_text(json.dumps(header))
    with pytest.raises(PMMRecCheckpointError,
                       match="text encoder configured now.*bottom_sha256: model file 'f{64}' vs now '"):
        world.load(other)
    with pytest.raises(PMMRecConfigError, match="cannot change hidden_size=64"):
        world.load(folder, hidden_size=64)


def test_recbole_pth_needs_trust_or_its_checkpoint_dir(world, rec, tmp_path):
    folder, config, model = world.model()
    saved = tmp_path / "saved"
    saved.mkdir()
    pth = saved / "PMMRec-held.pth"
    torch.save({"config": config, "state_dict": model.state_dict(), "epoch": 1}, pth)
    with pytest.raises(PMMRecCheckpointError, match="refusing to unpickle.*trust_pickle=True"):
        Recommender.load(pth)
    with pytest.raises(PMMRecCheckpointError, match="not inside"):
        Recommender.load(pth, checkpoint_dir=tmp_path / "elsewhere")
    with pytest.raises(PMMRecConfigError, match="cannot change text_encoder='minilm'"):  # no identity to check
        Recommender.load(pth, trust_pickle=True, text_encoder="minilm")
    for trusted in (Recommender.load(pth, trust_pickle=True), Recommender.load(pth, checkpoint_dir=saved)):
        assert trusted.config["dataset"] == "held"
        assert trusted.recommend(users=["u4"], k=5)[0].items == rec.recommend(users=["u4"], k=5)[0].items


# -------------------------------------------------------------------------------- command line


def test_cli_tsv_and_json(world, rec, tmp_path, capsys):
    folder = world.model()[0]
    base = [f"--model_file={folder}", f"--data_path={world.root / 'data'}", "--dataset=held",
            f"--cache_dir={world.base['cache_dir']}"]
    assert main(base + ["--users=u1,u2", "--k=3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user\trank\titem\tscore\ttitle" and len(lines) == 7
    expected = rec.recommend(users=["u1", "u2"], k=3)
    first = lines[1].split("\t")
    assert first[:3] == ["u1", "1", expected[0].items[0]] and float(first[3]) == pytest.approx(expected[0].scores[0],
                                                                                              rel=1e-5)
    assert first[4] == rec.title(expected[0].items[0]) and first[4].endswith(f"item{expected[0].items[0]}")
    out = tmp_path / "top.json"
    assert main(base + ["--history=1 2 3", "--history=4 5", "--k=2", "--format=json", f"--output={out}"]) == 0
    objects = [json.loads(line) for line in out.read_text().splitlines()]
    assert [o["user"] for o in objects] == ["history-1", "history-2"] and len(objects[1]["items"]) == 2
    assert main(base + ["--users=nobody"]) == 2
    assert "error: unknown user 'nobody'" in capsys.readouterr().err


def test_cli_error_is_one_line_without_traceback(tmp_path):
    pth = tmp_path / "PMMRec-x.pth"
    pth.write_bytes(b"not even a pickle")
    proc = subprocess.run([sys.executable, "-m", "recbole_pmmrec.recommend", f"--model_file={pth}", "--users=u1"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: refusing to unpickle") and "Traceback" not in proc.stderr



# -------------------------------------------------------------------------------- html page in a browser

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run"]


def test_html_page_shows_every_poster_and_title_in_a_browser(world, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (.ci/browser.sh)")
    if not CHROMIUM.is_file():
        pytest.skip(f"no browser at {CHROMIUM}: install Debian's chromium (.ci/browser.sh)")
    rec = world.load(world.copy(tmp_path / "model"))
    rec.add_items([world.new_item_row()], image_dir=world.full.folder / "full.images", persist=False)
    recs = rec.recommend(users=["u1", "u2"], k=5) + rec.recommend(
        histories=[["1", "2", HELD_OUT]], k=3, candidates=[HELD_OUT, "3", "9"], exclude_history=False)
    page_file = tmp_path / "page" / "top.html"
    rec.write(recs, "html", page_file)
    assert list(page_file.parent.iterdir()) == [page_file]  # self-contained: images are embedded
    expected_titles = {rec.title(item) for r in recs for item in r.items + r.history[-5:]}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        try:
            page = browser.new_page()
            page.goto(page_file.as_uri(), wait_until="load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
            shown = set(page.locator(".title").all_inner_texts())
            badges = page.locator(f'.card[data-item="{HELD_OUT}"] .new').count()
            visible = page.get_by_text(rec.title(recs[0].items[0]), exact=True).first.is_visible()
        finally:
            browser.close()
    n_cards = sum(len(r.items) + len(r.history[-5:]) for r in recs)
    assert len(images) == n_cards  # every synthetic item has a poster
    assert all(complete and width > 0 for complete, width in images), images
    assert expected_titles <= shown and visible
    assert badges >= 1  # the new item is marked (in the third history and its top 3)
