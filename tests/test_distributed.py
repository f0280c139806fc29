"""Multi-process training on RecBole's distributed support (2 processes, gloo on CPU).

The end-to-end test runs PMMRec with ``nproc=2`` and with one process on the same global batches
(``shuffle: False``: RecBole's DistributedSampler then splits each global batch of 16 rows into two
halves of 8), and checks that the ranks hold bitwise equal parameters after every step
(``ddp_check_sync``) and that the two runs train the same model. That equality needs NIP's in-batch
negatives to be gathered across ranks: with each rank's local slots only, the gradients differ.
"""

from __future__ import annotations

import pytest

from recbole_pmmrec.cli import _without_own_options, build_parser, main
from recbole_pmmrec.compat import load_own_checkpoint
from recbole_pmmrec.quick_start import run_recbole_pmmrec



def _same_batches_config(synth, pmmrec_config, tmp_path, name):
    return pmmrec_config(
        synth, epochs=2, shuffle=False, hidden_dropout_prob=0.0, attn_dropout_prob=0.0, fusion_dropout=0.0,
        w_nicl=0.0, w_nid=0.0, w_rcl=0.0, train_window_stride=10, learner="sgd", learning_rate=0.05, weight_decay=0.0,
        checkpoint_dir=str(tmp_path / name / "saved"), log_dir=str(tmp_path / name / "logs"),
        ddp_check_sync=True, state="INFO")


def test_two_processes_train_the_same_model_as_one_process(synth, pmmrec_config, tmp_path):
    single = run_recbole_pmmrec("PMMRec", synth.name, config_dict=_same_batches_config(synth, pmmrec_config, tmp_path, "one"))
    multi = run_recbole_pmmrec("PMMRec", synth.name, config_dict=_same_batches_config(synth, pmmrec_config, tmp_path, "two"),
                               nproc=2)
    assert multi is not None and multi["config"]["world_size"] == 2

    # Ranks in sync after every step: 40 training windows (one per L = 10 interactions), global batch 16 -> 3 steps per epoch, 2 epochs.
    log = open(multi["log_file"], encoding="utf-8").read()
    assert "parameters bitwise identical on all 2 ranks after each of 6 training steps" in log

    # Same global batches -> same gradients (NIP over the whole global batch) -> same weights.
    a = load_own_checkpoint(single["checkpoint"], tmp_path / "one" / "saved")["state_dict"]
    b = load_own_checkpoint(multi["checkpoint"], tmp_path / "two" / "saved")["state_dict"]
    assert a.keys() == b.keys()
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff < 1e-4, diff
    # Metrics: each rank ranks its half of the users, RecBole averages them.
    for metric, value in single["test_result"].items():
        assert multi["test_result"][metric] == pytest.approx(value, abs=2e-4), metric
    print(f"\n1 process: {single['test_result']}\n2 processes: {multi['test_result']}\nmax weight diff {diff:.2e}")


def test_cli_passes_nproc_and_resume_and_keeps_them_from_recbole(monkeypatch):
    args = build_parser().parse_known_args(["--nproc", "2", "--resume=saved/x.latest.pth", "--epochs=3"])[0]
    assert args.nproc == 2 and args.resume == "saved/x.latest.pth"
    assert _without_own_options(["--nproc", "2", "--resume=a.pth", "--epochs=3", "--nproc=4"]) == ["--epochs=3"]


def test_an_error_in_a_worker_reaches_the_caller_as_our_error(synth, quick_config, tmp_path, capsys):
    """A PMMRecError raised inside the spawned ranks comes back with its type and message (CLI: exit code 2)."""
    argv = ["--model=SASRec", "--dataset=nosuchdata", "--nproc=2", f"--data_path={synth.root}", "--use_gpu=False",
            f"--checkpoint_dir={tmp_path}/ckpt", f"--log_dir={tmp_path}/logs", "--state=ERROR"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: rank 0: dataset 'nosuchdata' not found" in err or "error: rank 1: dataset 'nosuchdata' not found" in err


def _large_result(model, dataset, config_file_list, config_dict, saved=True):
    """A stand-in entry point (module level: the spawned ranks import it by name) whose result is larger than a
    pipe's buffer (64 KiB on Linux)."""
    import types

    return {"config": types.SimpleNamespace(final_config_dict={"blob": "x" * 300_000,
                                                               "local_rank": config_dict["local_rank"]}),
            "test_result": {"ndcg@10": 0.5}, "trainer": object()}


def test_a_result_larger_than_a_pipe_buffer_comes_back_from_rank_0():
    """The launcher reads the ranks' records while they run: rank 0 writing 300 kB before it exits used to block on
    the full pipe while the launcher waited for it to exit."""
    import threading

    from recbole_pmmrec.launch import spawn_run

    box = {}
    thread = threading.Thread(target=lambda: box.update(result=spawn_run(_large_result, 2, "M", "D", config_dict={})),
                              daemon=True)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive(), "spawn_run did not return within 120 s"
    result = box["result"]
    assert result["config"]["local_rank"] == 0 and len(result["config"]["blob"]) == 300_000
    assert result["test_result"] == {"ndcg@10": 0.5} and "trainer" not in result
