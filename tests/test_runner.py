"""The command-line runner with built-in RecBole models, and its errors."""

import json

import pytest

from recbole_pmmrec.cli import main


def _argv(synth, tmp_path, *extra):
    return [f"--data_path={synth.root}", "--epochs=1", "--show_progress=False", "--use_gpu=False",
            "--state=WARNING", "--train_batch_size=64", f"--checkpoint_dir={tmp_path}/ckpt",
            f"--log_dir={tmp_path}/mylogs", f"--tensorboard_dir={tmp_path}/mytb", *extra]


@pytest.mark.parametrize("model", ["SASRec", "GRU4Rec"])
def test_builtin_model_trains_and_prints_test_metrics(model, synth, tmp_path, capsys):
    result = main([f"--model={model}", "--dataset=synth", *_argv(synth, tmp_path), "--MAX_ITEM_LIST_LENGTH=7"])
    printed = json.loads(capsys.readouterr().out.strip().split("\n\n")[-1])
    assert printed["model"] == model and set(printed["test_result"]) >= {"recall@10", "ndcg@10", "mrr@20"}
    assert result["config"]["MAX_ITEM_LIST_LENGTH"] == 7  # a --key=value override reached the config
    # Outputs go where the config keys say, and nowhere else.
    assert list((tmp_path / "ckpt").glob(f"{model}-*.pth"))
    assert list((tmp_path / "mylogs" / model).glob("*.log"))
    assert list((tmp_path / "mytb").iterdir())
    assert not (tmp_path / "log").exists() and not (tmp_path / "log_tensorboard").exists()
    assert not (tmp_path / "saved").exists()


def test_config_files_are_space_separated_and_later_wins(synth, tmp_path):
    (tmp_path / "a.yaml").write_text("learning_rate: 0.01\nhidden_size: 16\n")
    (tmp_path / "b.yaml").write_text("learning_rate: 0.02\n")
    result = main(["--model=SASRec", "--dataset=synth", f"--config_files={tmp_path}/a.yaml {tmp_path}/b.yaml",
                   *_argv(synth, tmp_path)])
    assert result["config"]["learning_rate"] == 0.02 and result["config"]["hidden_size"] == 16


def test_unknown_model_is_a_clear_error(synth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model=NoSuchRec", "--dataset=synth", *_argv(synth, tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown model 'NoSuchRec'" in err and "SASRec" in err


def test_unknown_dataset_is_a_clear_error_not_a_download(synth, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model=SASRec", "--dataset=nosuchdata", *_argv(synth, tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "dataset 'nosuchdata' not found" in err and "nosuchdata.inter" in err and "dataset_tools.convert" in err
