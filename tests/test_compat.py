"""Each compatibility fix of recbole_pmmrec.compat, with a regression test that fails without it."""

import subprocess
from fractions import Fraction
import sys

import numpy as np
import pytest
import torch

from recbole_pmmrec import compat
from recbole_pmmrec.errors import PMMRecCheckpointError, PMMRecConfigError


def test_numpy_aliases_are_needed_and_restored(monkeypatch, synth, quick_config):
    from recbole_pmmrec.quick_start import load_config

    # Simulate numpy 2, which removed np.float_: RecBole's Config breaks without the fix ...
    monkeypatch.delattr(np, "float_")
    with pytest.raises(AttributeError, match="float_"):
        load_config("SASRec", "synth", config_dict=quick_config(synth))
    # ... and works once the alias is restored.
    assert "float_" in compat.restore_numpy_aliases()
    config = load_config("SASRec", "synth", config_dict=quick_config(synth))
    assert config["model"] == "SASRec"


def test_pandas_3_is_refused_with_the_fix_named():
    compat.check_pandas("2.3.3")
    with pytest.raises(PMMRecConfigError, match=r"pandas<3"):
        compat.check_pandas("3.0.1")


def test_token_seq_fields_load_on_the_pinned_pandas(synth, quick_config):
    """pandas 3 breaks recbole on token_seq fields; the pinned one must load them intact."""
    from recbole.data import create_dataset

    from recbole_pmmrec.quick_start import load_config

    config = load_config("SASRec", "synth", config_dict=quick_config(
        synth, load_col={"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}))
    dataset = create_dataset(config)
    titles = dataset.item_feat["title"]  # a pandas Series of token-id arrays before _change_feat_format
    assert len(titles) == dataset.item_num
    assert all(len(tokens) == 2 for tokens in titles[1:]), "every synthetic title has two words"


def _own_checkpoint(tmp_path):
    path = tmp_path / "saved" / "own.pth"
    path.parent.mkdir()
    torch.save({"config": Fraction(1, 3), "state_dict": {}}, path)  # a pickled object, like RecBole's Config
    return path


def test_own_checkpoint_needs_the_fix(tmp_path):
    path = _own_checkpoint(tmp_path)
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        torch.load(path)  # torch >= 2.6 default: what RecBole's trainer does
    assert compat.load_own_checkpoint(path, tmp_path / "saved")["config"] == Fraction(1, 3)


def test_checkpoint_outside_the_run_is_refused(tmp_path):
    path = _own_checkpoint(tmp_path)
    with pytest.raises(PMMRecCheckpointError, match="not inside"):
        compat.load_own_checkpoint(path, tmp_path / "elsewhere")


def test_truncated_own_checkpoint_is_a_clear_error(tmp_path):
    path = _own_checkpoint(tmp_path)
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(PMMRecCheckpointError, match="truncated or corrupt"):
        compat.load_own_checkpoint(path, tmp_path / "saved")


def test_trainer_reloads_its_best_checkpoint(synth, quick_config):
    """RecBole's own Trainer.evaluate(load_best_model=True) fails on torch >= 2.6; ours does not."""
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    result = run_recbole_pmmrec("SASRec", "synth", config_dict=quick_config(synth))
    assert result["checkpoint"] and 0.0 <= result["test_result"]["ndcg@10"] <= 1.0


def test_load_best_model_restores_the_best_checkpoint_without_evaluating(synth, quick_config):
    """``trainer.load_best_model()`` puts the best checkpoint's weights back after training moved on."""
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.utils import create_dataset, data_preparation, get_model, get_trainer

    config = load_config("SASRec", "synth", config_dict=quick_config(synth, epochs=2))
    dataset = create_dataset(config)
    train, valid, _ = data_preparation(config, dataset)
    model = get_model("SASRec")(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model)
    trainer.fit(train, valid, saved=True)
    saved = torch.load(trainer.saved_model_file, weights_only=False)["state_dict"]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert trainer.load_best_model() == trainer.saved_model_file
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())


def test_package_never_imports_ray_or_recbole_quick_start():
    code = ("import sys, recbole_pmmrec.quick_start, recbole_pmmrec.utils, recbole_pmmrec.trainer;"
            "bad=[m for m in ('ray','recbole.quick_start','thop') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)
