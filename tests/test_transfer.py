"""Component checkpoints (recbole_pmmrec/transfer.py) and the transfer workflow through the runner."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil

import pytest
import torch
from recbole.utils import init_seed

from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError
from recbole_pmmrec.quick_start import load_config, run_recbole_pmmrec
from recbole_pmmrec.synthetic import make_synthetic_dataset
from recbole_pmmrec.transfer import (COMPONENTS, HEADER_FILE, WEIGHTS_FILE, exportable_state, load_pretrained,
                                     parse_components, read_header, save_pretrained)
from recbole_pmmrec.utils import create_dataset, data_preparation, get_model, get_trainer

MODALITY_SETS = {"text": ["text"], "image": ["image"], "text+image": ["text", "image"]}


def build(config_dict, dataset="synth", seed=2020):
    """(config, model, train, valid, test) for PMMRec; ``seed`` decides the fresh weights."""
    config = load_config("PMMRec", dataset, config_dict=dict(config_dict, seed=seed))
    init_seed(config["seed"], config["reproducibility"])
    data = create_dataset(config)
    train, valid, test = data_preparation(config, data)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model("PMMRec")(config, train._dataset)
    return config, model, train, valid, test


def component_state(model, name):
    prefix = COMPONENTS[name]
    return {k: v.clone() for k, v in exportable_state(model).items() if k.startswith(prefix)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class World:
    """One synthetic dataset, its splits per modality setting and 1-epoch checkpoints, built once per module
    (the tests copy a checkpoint before damaging it)."""

    def __init__(self, root, bert_dir):
        import timm
        from safetensors.torch import save_file

        self.root = root
        self.synth = make_synthetic_dataset(root / "data", name="synth", n_users=40, n_items=60, seed=0)
        # Fixed random weights for the tiny image encoder: every model has the same frozen image bottom
        # (as with real pretrained weights), whatever its seed.
        torch.manual_seed(0)
        image_ckpt = root / "efficientnet_lite0.safetensors"
        save_file(timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0).state_dict(),
                  str(image_ckpt))
        self.base = {
            "data_path": str(self.synth.root), "epochs": 1, "show_progress": False, "use_gpu": False,
            "state": "WARNING", "train_batch_size": 16, "eval_batch_size": 64, "MAX_ITEM_LIST_LENGTH": 10,
            "checkpoint_dir": str(root / "saved"), "log_dir": str(root / "logs"), "tensorboard_dir": str(root / "tb"),
            "text_encoder": str(bert_dir), "text_max_length": 12, "text_fields": ["title", "description"],
            "image_encoder": "timm:efficientnet_lite0", "image_checkpoint": str(image_ckpt), "image_size": 32,
            "image_grid": 2, "hidden_size": 32, "inner_size": 64, "fusion_heads": 2, "cache_dir": str(root / "cache"),
            "projection": "linear",  # one kind for every modality setting (~ would be mlp for one modality)
            "whiten": "raw",  # likewise (~ would be zca for text alone)
            "content_skip": 0.0,  # likewise (~ would add the skip weight to a text-only user encoder)
        }
        self._splits, self._checkpoints = {}, {}

    def config(self, modalities="text+image", **overrides) -> dict:
        return dict(self.base, modalities=MODALITY_SETS[modalities], **overrides)

    def splits(self, modalities="text+image"):
        """(config, train, valid, test), built once per modality setting."""
        if modalities not in self._splits:
            config = load_config("PMMRec", "synth", config_dict=self.config(modalities))
            init_seed(config["seed"], config["reproducibility"])
            self._splits[modalities] = (config, *data_preparation(config, create_dataset(config)))
        return self._splits[modalities]

    def fresh(self, modalities="text+image", seed=7):
        """A new PMMRec on the shared splits; ``seed`` decides its initial weights."""
        config, train, *_ = self.splits(modalities)
        torch.manual_seed(seed)
        return get_model("PMMRec")(config, train._dataset)

    def checkpoint(self, modalities="text+image"):
        """(folder, trained model): 1 epoch on synth, saved with save_pretrained."""
        if modalities not in self._checkpoints:
            config, train, valid, _ = self.splits(modalities)
            model = self.fresh(modalities, seed=1)
            get_trainer(config["MODEL_TYPE"], "PMMRec")(config, model).fit(train, valid, saved=False)
            folder = self.root / f"ckpt-{modalities}"
            save_pretrained(model, folder, config, ["synth"])
            self._checkpoints[modalities] = (folder, model)
        return self._checkpoints[modalities]

    def copy(self, modalities, dest):
        """A copy of a checkpoint folder that a test may damage."""
        import shutil

        return shutil.copytree(self.checkpoint(modalities)[0], dest)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_bert_dir):
    return World(tmp_path_factory.mktemp("transfer"), tiny_bert_dir)


# -------------------------------------------------------------------------------- round trip


def test_round_trip_gives_identical_scores(world):
    folder, trained = world.checkpoint("text+image")
    header = json.loads((folder / HEADER_FILE).read_text())
    assert header["model"] == "PMMRec" and header["modalities"] == ["text", "image"]
    assert header["source_datasets"] == ["synth"] and header["versions"]["torch"] == torch.__version__
    assert set(header["encoders"]) == {"text", "image"} and len(header["encoders"]["text"]["bottom_sha256"]) == 64
    assert header["config"]["hidden_size"] == 32 and header["components"]["fusion"]["trained"] is True
    assert not any(".backbone.bottom." in k for k in exportable_state(trained))

    fresh = world.fresh("text+image", seed=7)  # other initial weights
    batch = next(iter(world.splits("text+image")[3]))[0]
    trained.eval(), fresh.eval()
    with torch.no_grad():
        expected = trained.full_sort_predict(batch)
        before = fresh.full_sort_predict(batch)
    assert not torch.allclose(before, expected)  # so the equality below means something
    report = load_pretrained(fresh, folder, components=list(COMPONENTS))
    with torch.no_grad():
        after = fresh.full_sort_predict(batch)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    for name in COMPONENTS:
        row = report.components[name]
        assert len(row.loaded) == header["components"][name]["tensors"] > 0
        assert not (row.missing or row.unexpected or row.mismatched)
    assert "user_encoder" in str(report) and "shape-mismatched" in str(report)


@pytest.mark.parametrize("component", ["text_encoder", "image_encoder", "fusion", "user_encoder"])
def test_each_component_alone_loads_only_itself(component, world):
    folder, trained = world.checkpoint("text+image")
    fresh = world.fresh("text+image")
    before = {name: component_state(fresh, name) for name in COMPONENTS}
    report = load_pretrained(fresh, folder, components=[component])
    assert list(report.components) == [component]
    row = report.components[component]
    assert len(row.loaded) == len(before[component]) > 0 and not (row.missing or row.unexpected)
    assert same(component_state(fresh, component), component_state(trained, component))
    for name, state in before.items():
        if name != component:
            assert same(component_state(fresh, name), state), f"{name} changed when loading {component}"


# checkpoint modalities, target modalities -> what the default (components=~) loads
MODALITY_CASES = [
    ("text", "text+image", {"text_encoder", "user_encoder"}),
    ("image", "text+image", {"image_encoder", "user_encoder"}),
    ("text+image", "text", {"text_encoder", "user_encoder"}),
    ("text+image", "image", {"image_encoder", "user_encoder"}),
    ("text", "text", {"text_encoder", "user_encoder"}),
    ("text+image", "text+image", {"text_encoder", "image_encoder", "fusion", "user_encoder"}),
]


@pytest.mark.parametrize("source,target,expected", MODALITY_CASES)
def test_modality_settings_load_the_shared_side(source, target, expected, world):
    folder, trained = world.checkpoint(source)
    fresh = world.fresh(target)
    report = load_pretrained(fresh, folder)
    assert set(report.components) == expected
    assert set(report.skipped) == {"text_encoder", "image_encoder", "fusion", "user_encoder"} - expected
    for name in expected:
        assert same(component_state(fresh, name), component_state(trained, name))
    if target != "text+image":  # the single-modality target really uses what it loaded
        batch = next(iter(world.splits(target)[3]))[0]
        copy = world.fresh(target, seed=3)
        load_pretrained(copy, folder)
        copy.eval(), fresh.eval()
        with torch.no_grad():
            torch.testing.assert_close(copy.full_sort_predict(batch), fresh.full_sort_predict(batch))


def test_a_component_that_cannot_load_when_listed_is_an_error(world):
    folder, _ = world.checkpoint("text")
    fresh = world.fresh("text+image")
    with pytest.raises(PMMRecCheckpointError, match="has no image modality"):
        load_pretrained(fresh, folder, components=["text_encoder", "image_encoder"])
    with pytest.raises(PMMRecCheckpointError, match="asks for fusion.*never trained"):
        load_pretrained(fresh, folder, components=["fusion"])
    text_only = world.fresh("text")
    with pytest.raises(PMMRecCheckpointError, match="the model has no image modality"):
        load_pretrained(text_only, world.checkpoint("text+image")[0], components=["image_encoder"])
    with pytest.raises(PMMRecCheckpointError, match="the model has one modality"):
        load_pretrained(text_only, world.checkpoint("text+image")[0], components=["fusion"])
    with pytest.raises(PMMRecConfigError, match="unknown component"):
        load_pretrained(text_only, folder, components=["item_embedding"])
    assert parse_components("[text_encoder, user_encoder]") == ["text_encoder", "user_encoder"]


# -------------------------------------------------------------------------------- error cases


def test_shape_mismatch_is_an_error(world):
    folder, _ = world.checkpoint("text")
    config, train, *_ = world.splits("text")
    longer_config = load_config("PMMRec", "synth", config_dict=world.config("text", MAX_ITEM_LIST_LENGTH=12))
    longer = get_model("PMMRec")(longer_config, train._dataset)  # only the position table differs
    with pytest.raises(PMMRecCheckpointError, match=r"position_embedding.weight \(10, 32\) vs \(12, 32\)"):
        load_pretrained(longer, folder, components=["user_encoder"])
    load_pretrained(longer, folder, components=["text_encoder"])  # the other components still fit


def test_architecture_mismatch_names_the_key(world):
    folder, _ = world.checkpoint("text")
    _, train, *_ = world.splits("text")
    for overrides, message in (({"hidden_size": 16, "inner_size": 32}, "hidden_size: checkpoint 32 vs model 16"),
                               ({"n_heads": 4}, "n_heads: checkpoint 2 vs model 4")):
        config = load_config("PMMRec", "synth", config_dict=world.config("text", **overrides))
        other = get_model("PMMRec")(config, train._dataset)
        with pytest.raises(PMMRecCheckpointError, match=message):
            load_pretrained(other, folder, components=["user_encoder"])


def test_zero_tensors_loaded_is_an_error(world, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = world.copy("text", tmp_path / "ckpt")
    weights = {k: v for k, v in load_file(str(folder / WEIGHTS_FILE)).items() if not k.startswith("user_encoder.")}
    save_file(weights, str(folder / WEIGHTS_FILE))
    header = json.loads((folder / HEADER_FILE).read_text())
    header.pop("weights_sha256")
    (folder / HEADER_FILE).write_text(json.dumps(header))
    with pytest.raises(PMMRecCheckpointError, match="cannot load user_encoder .*zero tensors matched"):
        load_pretrained(world.fresh("text"), folder, components=["user_encoder"])


def test_encoder_with_another_frozen_bottom_is_refused(world, tiny_bert_dir, tmp_path):
    from transformers import BertModel

    folder, _ = world.checkpoint("text")
    other = tmp_path / "other_bert"
    torch.manual_seed(123)
    BertModel(BertModel.config_class.from_pretrained(tiny_bert_dir)).save_pretrained(other)  # same shapes
    for f in tiny_bert_dir.iterdir():
        if "token" in f.name or f.name == "vocab.txt":
            (other / f.name).write_bytes(f.read_bytes())
    for overrides, message in (({"text_encoder": str(other)}, "bottom_sha256.*cached states would not match"),
                               ({"text_train_layers": 1}, "boundary_layer: checkpoint 2 vs model 1")):
        _, model, *_ = build(world.config("text", **overrides))  # the dataset's encoder made its cache
        with pytest.raises(PMMRecCheckpointError, match=message):
            load_pretrained(model, folder, components=["text_encoder"])
        report = load_pretrained(model, folder, components=["user_encoder"])  # the user encoder does not care
        assert list(report.components) == ["user_encoder"]


def test_corrupt_or_truncated_weights_are_refused(world, tmp_path):
    folder = world.copy("text", tmp_path / "ckpt")
    fresh = world.fresh("text")
    data = (folder / WEIGHTS_FILE).read_bytes()
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF
    (folder / WEIGHTS_FILE).write_bytes(bytes(flipped))
    with pytest.raises(PMMRecCheckpointError, match="truncated, corrupt"):
        load_pretrained(fresh, folder)
    # truncated, and the header carries no checksum: safetensors' own check must catch it
    (folder / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    header = json.loads((folder / HEADER_FILE).read_text())
    header.pop("weights_sha256")
    (folder / HEADER_FILE).write_text(json.dumps(header))
    with pytest.raises(PMMRecCheckpointError, match="truncated or corrupt"):
        load_pretrained(fresh, folder)
    (folder / HEADER_FILE).write_text("{not json")
    with pytest.raises(PMMRecCheckpointError, match="not valid JSON"):
        load_pretrained(fresh, folder)
    (folder / HEADER_FILE).unlink()
    with pytest.raises(PMMRecCheckpointError, match="no pmmrec.json"):
        load_pretrained(fresh, folder)


def test_checkpoint_of_another_model_type_is_refused(world, tmp_path):
    folder = world.copy("text", tmp_path / "ckpt")
    header = json.loads((folder / HEADER_FILE).read_text())
    (folder / HEADER_FILE).write_text(json.dumps(dict(header, model="SASRec")))
    with pytest.raises(PMMRecCheckpointError, match="holds a SASRec model, not a PMMRec"):
        load_pretrained(world.fresh("text"), folder)
    (folder / HEADER_FILE).write_text(json.dumps(header))
    config = load_config("SASRec", "synth", config_dict={k: world.base[k] for k in (
        "data_path", "use_gpu", "state", "MAX_ITEM_LIST_LENGTH", "checkpoint_dir")})
    init_seed(config["seed"], True)
    train, *_ = data_preparation(config, create_dataset(config))
    sasrec = get_model("SASRec")(config, train._dataset)
    with pytest.raises(PMMRecCheckpointError, match="holds a PMMRec model, not a SASRec"):
        load_pretrained(sasrec, folder)
    (folder / HEADER_FILE).write_text(json.dumps(dict(header, format_version=99)))
    with pytest.raises(PMMRecCheckpointError, match="format_version 99 is not supported"):
        read_header(folder)


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_pickled_checkpoint_is_refused_and_its_code_never_runs(world, tmp_path):
    # the payload really runs code when unpickled (else this test could not fail)
    probe = tmp_path / "probe-marker"
    pickle.loads(pickle.dumps({"state_dict": _Payload(probe)}))
    assert probe.exists()

    marker = tmp_path / "marker"
    evil = tmp_path / "evil"
    evil.mkdir()
    for name in ("model.pth", "pytorch_model.bin"):
        torch.save({"state_dict": _Payload(marker)}, evil / name)
    folder, _ = world.checkpoint("text")
    (evil / HEADER_FILE).write_bytes((folder / HEADER_FILE).read_bytes())  # a plausible header does not help
    fresh = world.fresh("text")
    with pytest.raises(PMMRecCheckpointError, match="refusing to load .*pickle"):
        load_pretrained(fresh, evil)
    for name in ("model.pth", "pytorch_model.bin"):
        with pytest.raises(PMMRecCheckpointError, match="refusing to load .*pickle"):
            load_pretrained(fresh, evil / name)
    assert not marker.exists()


# -------------------------------------------------------------------------------- workflow


def test_freeze_keeps_transferred_weights_through_training(world):
    folder, trained = world.checkpoint("text+image")
    frozen_names = ["text_encoder", "user_encoder"]
    model = world.fresh("text+image")
    load_pretrained(model, folder, components=frozen_names, freeze=True)
    for key, p in model.named_parameters():
        assert p.requires_grad == (not key.startswith(("item_tower.text_encoder.", "user_encoder."))), key
    groups = model.parameter_groups(1e-3, 0.1, 1e-4, 0.0)
    assert all(p.requires_grad for g in groups for p in g["params"])

    # through the runner: load, freeze, train an epoch, save the result (auto folder)
    result = run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
        "text+image", pretrained=str(folder), transfer_components=frozen_names, freeze_transferred=True,
        save_pretrained="auto"))
    out = world.root / "saved" / "PMMRec-synth-pretrained"
    assert result["pretrained_folder"] == str(out)
    reloaded = world.fresh("text+image", seed=9)
    load_pretrained(reloaded, out, components=["text_encoder", "image_encoder", "fusion", "user_encoder"])
    for name in frozen_names:
        assert same(component_state(reloaded, name), component_state(trained, name)), f"{name} moved"
    for name in ("image_encoder", "fusion"):  # trained from a fresh start
        assert not same(component_state(reloaded, name), component_state(trained, name))
    assert read_header(out)["source_datasets"] == ["synth"]
    recorded = read_header(out)["corpus"]  # what it was trained on: files with their hashes
    assert recorded["dataset"] == "synth" and set(recorded["files"]) >= {"synth.inter", "synth.item"}
    from recbole_pmmrec.hashing import file_sha256

    assert recorded["files"]["synth.inter"]["sha256"] == file_sha256(world.synth.folder / "synth.inter")


def test_shrink_mixes_saved_parameters_with_the_fresh_initialisation(world):
    folder, trained = world.checkpoint("text")
    model = world.fresh("text", seed=7)
    fresh_params = {k: p.detach().clone() for k, p in model.named_parameters()}
    fresh_buffers = {k: b.clone() for k, b in model.named_buffers()}
    report = load_pretrained(model, folder, components=["user_encoder"], shrink=0.25)
    assert "shrunk: 0.25 x saved" in str(report)
    saved = dict(trained.named_parameters())
    moved = 0
    for key, p in model.named_parameters():
        if key.startswith("user_encoder."):
            expected = 0.25 * saved[key].detach() + 0.75 * fresh_params[key]
            torch.testing.assert_close(p.detach(), expected)
            moved += int(not torch.equal(saved[key], fresh_params[key]))
        else:  # not loaded: untouched
            assert torch.equal(p.detach(), fresh_params[key]), key
    assert moved > 0  # the mix differs from both ends
    saved_buffers = dict(trained.named_buffers())
    for key, b in model.named_buffers():  # buffers load as saved (or stay, outside the component)
        if key.startswith("user_encoder."):
            assert torch.equal(b, saved_buffers[key]), key
    for bad in (-0.1, 1.5):
        with pytest.raises(PMMRecConfigError, match="transfer_shrink"):
            load_pretrained(world.fresh("text"), folder, shrink=bad)


def test_zero_shot_on_another_dataset(world):
    folder, _ = world.checkpoint("text+image")
    other = make_synthetic_dataset(world.root / "data", name="other", n_users=30, n_items=50, seed=5,
                                   item_prefix="b")
    result = run_recbole_pmmrec("PMMRec", "other", config_dict=world.config(
        "text+image", epochs=0, pretrained=str(folder), text_fields=None))
    assert result["checkpoint"] is None  # no training step, no trainer checkpoint
    metrics = result["test_result"]
    assert set(metrics) >= {"ndcg@10", "recall@10"} and all(math.isfinite(v) for v in metrics.values())
    # the metrics are those of the pretrained model, not of a fresh one
    fresh = run_recbole_pmmrec("PMMRec", "other", config_dict=world.config("text+image", epochs=0, text_fields=None))
    assert fresh["test_result"] != metrics


def test_few_shot_keeps_valid_and_test_users(world):
    def split(ratio):
        config = load_config("PMMRec", "synth", config_dict=world.config("text", few_shot_ratio=ratio))
        init_seed(config["seed"], True)
        train, valid, test = data_preparation(config, create_dataset(config))
        return [d._dataset.inter_feat for d in (train, valid, test)], config["USER_ID_FIELD"]

    (full_train, full_valid, full_test), uid = split(1.0)
    (few_train, few_valid, few_test), _ = split(0.25)
    full_users, few_users = set(full_train[uid].tolist()), set(few_train[uid].tolist())
    assert few_users < full_users and len(few_users) == round(0.25 * len(full_users))
    for a, b in ((full_valid, few_valid), (full_test, few_test)):
        for field in (uid, "item_id", "item_id_list"):
            assert torch.equal(a[field], b[field])
    for u in few_users:  # a kept user keeps all of their training rows
        assert int((full_train[uid] == u).sum()) == int((few_train[uid] == u).sum())


def test_projection_unset_takes_the_checkpoint_kind(world):
    """``projection: ~`` is mlp for one modality and linear for two, ``whiten: ~`` zca for one frozen modality and
    raw for two, ``hidden_size: ~`` 128 for frozen text alone and 64 with two; with ``pretrained`` all are the
    checkpoint's, so a text-only model (mlp, zca) still transfers into
    a text + image model (whose text groups are then whitened); a checkpoint without the key was trained raw."""
    widths = {"hidden_size": None, "inner_size": None}  # likewise 128 (and 4x) for frozen text alone, 64 with two
    result = run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
        "text", projection=None, whiten=None, save_pretrained=str(world.root / "text-mlp"), **widths))
    assert result["config"]["projection"] == "mlp" and result["config"]["whiten"] == "zca"  # decided
    assert (result["config"]["hidden_size"], result["config"]["inner_size"]) == (128, 512)
    header = read_header(world.root / "text-mlp")["config"]
    assert header["projection"] == "mlp" and header["whiten"] == "zca" and header["inner_size"] == 512
    moved = run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
        "text+image", projection=None, whiten=None, epochs=0, pretrained=str(world.root / "text-mlp"),
        transfer_components=["text_encoder", "user_encoder"], **widths))
    assert moved["config"]["projection"] == "mlp" and moved["config"]["whiten"] == "zca"  # the checkpoint's
    assert (moved["config"]["hidden_size"], moved["config"]["inner_size"]) == (128, 512)
    fused = run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config("text+image", projection=None,
                                                                            whiten=None, epochs=0, **widths))
    assert fused["config"]["projection"] == "linear" and fused["config"]["whiten"] == "raw"
    assert (fused["config"]["hidden_size"], fused["config"]["inner_size"]) == (64, 256)
    with pytest.raises(PMMRecCheckpointError, match="whiten"):  # the projection was trained on whitened states
        run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
            "text", whiten="raw", epochs=0, pretrained=str(world.root / "text-mlp"),
            transfer_components=["text_encoder"]))


class _ConfigStub:
    """What ``resolve_from_checkpoint`` reads of a Config (settings, ``[key]``, resolve), with ``pretrained`` set to
    ``folder``; each resolve is recorded as (reason, keys)."""

    def __init__(self, folder, **settings):
        from types import SimpleNamespace

        class Settings(SimpleNamespace):
            def __contains__(self, key):
                return key in vars(self)

        self.settings, self.folder, self.lines = Settings(**settings), folder, []

    def __getitem__(self, key):
        return str(self.folder) if key == "pretrained" else None

    def resolve(self, reason, **values):
        vars(self.settings).update(values)
        self.lines.append((reason, sorted(values)))


def test_whiten_from_a_checkpoint_says_raw_only_for_a_header_without_the_key(world, tmp_path):
    """``whiten: ~`` with ``pretrained`` logs where its value came from; "(raw: written before the key)" only when the
    checkpoint's header has no ``whiten`` (it read as raw), not for one that records it. ``projection: ~`` takes the
    checkpoint's kind, and its ``moe_experts`` only for a moe projection."""
    from recbole_pmmrec.quick_start import resolve_from_checkpoint

    saved = world.root / "text-zca"
    if not saved.exists():
        run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
            "text", projection=None, whiten=None, epochs=1, save_pretrained=str(saved)))

    recorded = _ConfigStub(saved, projection=None, whiten=None)
    resolve_from_checkpoint(recorded)
    assert recorded.settings.whiten == "zca" and recorded.settings.projection == "mlp"
    assert recorded.lines == [("taken from the pre-trained checkpoint", ["projection"]),
                              ("taken from the pre-trained checkpoint", ["whiten"])]  # no moe_experts for an mlp
    older = tmp_path / "older"
    shutil.copytree(saved, older)
    header = json.loads((older / HEADER_FILE).read_text())
    del header["config"]["whiten"]
    (older / HEADER_FILE).write_text(json.dumps(header))
    unrecorded = _ConfigStub(older, projection=None, whiten=None)
    resolve_from_checkpoint(unrecorded)
    assert unrecorded.settings.whiten == "raw"
    assert unrecorded.lines[1] == ("taken from the pre-trained checkpoint (raw: written before the key)", ["whiten"])


def test_score_tau_from_a_checkpoint_is_the_one_it_was_trained_with(world, tmp_path):
    """``score_tau: ~`` with ``pretrained`` takes the checkpoint's (a model pre-trained with cosine scores is
    fine-tuned and scored with them), 0 for a header written before the key; a value set by the user wins."""
    from recbole_pmmrec.quick_start import resolve_from_checkpoint

    saved = world.root / "text-cosine"
    if not saved.exists():
        run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config("text", score_tau=0.1, epochs=1,
                                                                          save_pretrained=str(saved)))
    cosine = _ConfigStub(saved, score_tau=None)
    resolve_from_checkpoint(cosine)
    assert cosine.settings.score_tau == 0.1 and cosine.lines == [("taken from the pre-trained checkpoint",
                                                                   ["score_tau"])]
    kept = _ConfigStub(saved, score_tau=0.0)
    resolve_from_checkpoint(kept)
    assert kept.settings.score_tau == 0.0 and kept.lines == []
    older = tmp_path / "older"
    shutil.copytree(saved, older)
    header = json.loads((older / HEADER_FILE).read_text())
    del header["config"]["score_tau"]
    (older / HEADER_FILE).write_text(json.dumps(header))
    unrecorded = _ConfigStub(older, score_tau=None)
    resolve_from_checkpoint(unrecorded)
    assert unrecorded.settings.score_tau == 0.0
    assert unrecorded.lines == [("taken from the pre-trained checkpoint (dot products: written before the key)",
                                 ["score_tau"])]
    run = run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config("text", score_tau=None, epochs=0,
                                                                        pretrained=str(saved)), saved=False)
    assert run["config"]["score_tau"] == run["trainer"].model.score_tau == 0.1


def test_corpus_of_a_merged_data_set_lists_each_source(tmp_path):
    """A checkpoint pre-trained on several sources (``dataset_tools.convert merge``) records each source's name,
    counts and file hashes, as the merge converter wrote them to meta.json."""
    import json as _json

    from recbole_pmmrec.transfer import corpus

    folder = tmp_path / "mix"
    folder.mkdir()
    meta = {"format": "merge", "counts": {"interactions": 30},
            "source": {"datasets": [{"name": "a", "counts": {"interactions": 10}, "sha256": {"a.inter": "x"}},
                                    {"name": "b", "counts": {"interactions": 20}, "sha256": {"b.inter": "y"}}]}}
    (folder / "mix.meta.json").write_text(_json.dumps(meta))
    got = corpus({"dataset": "mix", "data_path": str(folder)}, {"mix.inter": {"sha256": "z", "bytes": 5}})
    assert got["files"] == {"mix.inter": {"sha256": "z", "bytes": 5}} and got["counts"] == {"interactions": 30}
    assert [s["name"] for s in got["sources"]] == ["a", "b"] and got["sources"][1]["sha256"] == {"b.inter": "y"}


def test_moe_adaptor_is_a_gated_mixture_of_whitening_experts():
    from recbole_pmmrec.model.item_tower import WhiteningExperts

    torch.manual_seed(0)
    layer = WhiteningExperts(6, 4, n_experts=3)
    with torch.no_grad():
        layer.bias.normal_()
    x = torch.randn(5, 2, 6)
    gates = torch.softmax(layer.gate(x), dim=-1)
    expected = sum(gates[..., k, None] * ((x - layer.bias[k]) @ layer.weight[k]) for k in range(3))
    torch.testing.assert_close(layer(x), expected)
    layer(x).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())


@pytest.mark.parametrize("mode,trains", [("adaptor", ".proj."), ("user_encoder", "user_encoder.")])
def test_finetune_modes_train_only_their_part(world, mode, trains):
    """``finetune: adaptor`` (with ``projection: moe``: UniSRec's fixed-encoder mode) trains only the projections;
    ``finetune: user_encoder`` only the user encoder; the checkpoint records the adaptor and loads it back."""
    folder = world.root / f"moe-{mode}"
    run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config("text", projection="moe", moe_experts=2,
                                                                    save_pretrained=str(folder)))
    assert read_header(folder)["config"]["projection"] == "moe"
    result = run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
        "text", projection=None, pretrained=str(folder), finetune=mode))
    model = result["trainer"].model
    assert result["config"]["projection"] == "moe"  # taken from the checkpoint
    trainable = [k for k, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(trains in f".{k}" for k in trainable)
    frozen = [k for k, p in model.named_parameters() if not p.requires_grad]
    assert frozen and not any(trains in f".{k}" for k in frozen)


def _on_evaluate_after_fit(monkeypatch, action) -> dict:
    """Patch the trainer so that ``action()`` runs at each evaluation after ``fit`` returned (the test's);
    the returned dict says whether ``fit`` finished."""
    from recbole_pmmrec.trainer import PMMRecTrainer

    fit, evaluate = PMMRecTrainer.fit, PMMRecTrainer.evaluate
    state = {"fitted": False}

    def fit_then_mark(self, *args, **kwargs):
        out = fit(self, *args, **kwargs)
        state["fitted"] = True
        return out

    def evaluate_with_action(self, *args, **kwargs):
        if state["fitted"]:
            action()
        return evaluate(self, *args, **kwargs)

    monkeypatch.setattr(PMMRecTrainer, "fit", fit_then_mark)
    monkeypatch.setattr(PMMRecTrainer, "evaluate", evaluate_with_action)
    return state


def test_components_are_written_before_the_test(world, tmp_path, monkeypatch):
    """On a large corpus the test can take as long as an epoch: a run stopped in it keeps its components."""

    def stop():
        raise KeyboardInterrupt("stopped during the test")

    state = _on_evaluate_after_fit(monkeypatch, stop)
    out = tmp_path / "components"
    with pytest.raises(KeyboardInterrupt):
        run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config("text", save_pretrained=str(out)))
    assert state["fitted"]
    assert read_header(out)["source_datasets"] == ["synth"]
    assert (out / "model.safetensors").is_file()


def test_eval_test_false_skips_the_test_and_keeps_the_components(world, tmp_path, monkeypatch):
    """Pre-training for the components only: no test evaluation (it can take as long as an epoch on a corpus)."""
    after_fit = []
    state = _on_evaluate_after_fit(monkeypatch, lambda: after_fit.append(1))
    out = tmp_path / "components"
    result = run_recbole_pmmrec("PMMRec", "synth",
                                config_dict=world.config("text", save_pretrained=str(out), eval_test=False))
    assert state["fitted"] and not after_fit
    assert result["test_result"] == {}
    assert (out / "model.safetensors").is_file()


# -------------------------------------------------------------------------------- skip_calibration


class _SkipStub(torch.nn.Module):
    """A model whose only part is a content skip with weight ``w``."""

    def __init__(self, w):
        super().__init__()
        self.skip = torch.nn.Module()
        self.skip.weight = torch.nn.Parameter(torch.tensor(float(w)))


def test_calibrate_skip_keeps_the_best_factor_and_prefers_the_checkpoints_own_on_ties():
    from recbole_pmmrec.transfer import SKIP_FACTORS, calibrate_skip

    model = _SkipStub(2.0)
    seen = []

    def peak_at_20():  # highest at w = 20 (factor 10); records the weight each factor was scored at
        seen.append(float(model.skip.weight.detach()))
        return -abs(float(model.skip.weight.detach()) - 20.0)

    best, scores = calibrate_skip(model, peak_at_20)
    assert best == 10.0 and float(model.skip.weight.detach()) == 20.0
    assert seen == [2.0 * f for f in SKIP_FACTORS] and set(scores) == set(SKIP_FACTORS)
    assert model.skip.weight.requires_grad  # still a trained parameter, from the chosen value
    flat = _SkipStub(3.0)
    assert calibrate_skip(flat, lambda: 0.5)[0] == 1.0 and float(flat.skip.weight.detach()) == 3.0  # a tie keeps it
    with pytest.raises(PMMRecConfigError, match="skip_calibration"):
        calibrate_skip(torch.nn.Module(), lambda: 0.0)


def test_skip_calibration_on_loading_a_checkpoint_with_a_content_skip(world):
    """~ calibrates a loaded model's skip weight on the validation rows before any training step; False keeps the
    checkpoint's; True without a skip is an error that names the key."""
    from recbole_pmmrec.transfer import SKIP_FACTORS

    folder = world.root / "text-skip"
    run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
        "text", content_skip=1.0, content_skip_dim=8, save_pretrained=str(folder)))
    saved = float(read_header(folder)["config"]["content_skip"])

    def zero_shot(**keys):
        return run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
            "text", content_skip=None, epochs=0, pretrained=str(folder), **keys))

    kept = zero_shot(skip_calibration=False)
    assert float(kept["trainer"].model.skip.weight.detach()) == pytest.approx(saved)
    run = zero_shot()
    model, trainer, valid = run["trainer"].model, run["trainer"], run["valid_data"]
    factor = float(model.skip.weight.detach()) / saved
    assert any(factor == pytest.approx(f) for f in SKIP_FACTORS)
    by_factor = {}
    with torch.no_grad():
        for f in SKIP_FACTORS:  # scored again here: the chosen factor is the best on validation
            model.skip.weight.fill_(saved * f)
            by_factor[f] = trainer.evaluate(valid, load_best_model=False, show_progress=False)["ndcg@10"]
    assert max(by_factor.values()) == pytest.approx(by_factor[min(SKIP_FACTORS, key=lambda f: abs(f - factor))])
    assert run["best_valid_score"] == pytest.approx(max(by_factor.values()))
    plain = world.checkpoint("text+image")[0]  # no skip there
    with pytest.raises(PMMRecConfigError, match="skip_calibration"):
        run_recbole_pmmrec("PMMRec", "synth", config_dict=world.config(
            "text+image", epochs=0, pretrained=str(plain), skip_calibration=True))
