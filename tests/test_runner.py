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


def test_epoch_callback_records_every_epoch_can_stop_and_can_rescore(synth, quick_config):
    """``run_recbole_pmmrec(..., epoch_callback=fn)``: one record per epoch with times, loss and validation;
    returning "stop" ends training after that epoch's checkpoint; a changed record["score"] is what early
    stopping and the best checkpoint use."""
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    seen = []

    def stop_after_two(record, trainer, valid_data):
        seen.append(dict(record))
        record["score"] = float(-record["epoch"])  # epoch 0 is the best by this score
        return "stop" if record["epoch"] == 1 else None

    result = run_recbole_pmmrec("SASRec", "synth", config_dict=quick_config(synth, epochs=6, MAX_ITEM_LIST_LENGTH=7),
                                epoch_callback=stop_after_two)
    assert [r["epoch"] for r in seen] == [0, 1]  # stopped after epoch 1
    assert all(r["train_s"] > 0 and r["valid_s"] > 0 and "ndcg@10" in r["valid"] for r in seen)
    assert seen[1]["wall_s"] > seen[0]["wall_s"]
    assert result["best_valid_score"] == 0.0  # the callback's score chose epoch 0
    assert result["trainer"].cur_step == 1  # early stopping counted one epoch without improvement


def test_no_validated_epoch_still_returns_a_result(synth, quick_config):
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    records = []
    result = run_recbole_pmmrec("SASRec", "synth", config_dict=quick_config(synth, epochs=2, eval_step=0,
                                                                            MAX_ITEM_LIST_LENGTH=7),
                                epoch_callback=lambda record, *_: records.append(record))
    assert [r["valid"] for r in records] == [None, None] and result["best_valid_result"] == {}
    assert "ndcg@10" in result["test_result"]


def test_an_option_given_twice_with_different_values_is_one_clear_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--model=SASRec", "--epochs=1", "--epochs=2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--epochs ('1' and '2')" in err and "Traceback" not in err


def test_each_epoch_logs_its_progress_and_an_upper_bound_of_the_time_left(synth, quick_config):
    from recbole_pmmrec.quick_start import run_recbole_pmmrec

    result = run_recbole_pmmrec("SASRec", "synth", config_dict=quick_config(synth, epochs=2, MAX_ITEM_LIST_LENGTH=7,
                                                                            state="INFO"))
    log = open(result["log_file"], encoding="utf-8").read().splitlines()
    lines = [line.split("INFO  ", 1)[-1] for line in log if "min so far" in line]
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "at most 1 epochs" in lines[0]
    assert "at most 0 epochs" in lines[1]
