"""bench/studies/transfer.py end to end on tiny synthetic data: two sources merged, pre-trained, scored zero-shot and
fine-tuned on a target, each run in its own process through ``run_recbole_pmmrec``; a rerun skips every finished
run; bad input is one line."""

import json

import pytest

from bench.studies import transfer
from recbole_pmmrec.synthetic import make_synthetic_dataset, make_tiny_text_encoder


@pytest.fixture
def study(tmp_path):
    data = tmp_path / "data"
    make_synthetic_dataset(data, name="src-a", n_users=30, n_items=40, seed=1, images=False, max_len=10)
    make_synthetic_dataset(data, name="src-b", n_users=30, n_items=40, seed=2, images=False, max_len=10)
    make_synthetic_dataset(data, name="tgt", n_users=30, n_items=40, seed=3, images=False, max_len=10)
    encoder = make_tiny_text_encoder(tmp_path / "tiny_bert")
    return ["--data-dir", str(data), "--work-dir", str(tmp_path / "work"), "--sources", "src-a", "src-b",
            "--with-sources", "--targets", "tgt", "--with-targets", "--corpus-name", "corpus", "--seeds", "7",
            "--ratios", "0.5", "1.0", "--settings", "scratch/all", "pretrained/user_encoder",
            "--pretrain-epochs", "3", "--pretrain-budget-s", "1e-9", "--pretrain-batch-size", "16", "--epochs", "1",
            "--max-source-users", "20", "--source-users", "src-b=10",
            "--out", str(tmp_path / "transfer_corpus.json"),
            "--set", f"text_encoder={encoder}", "text_max_length=8", "hidden_size=16", "inner_size=32",
            "n_layers=1", "train_batch_size=16", "eval_batch_size=64", "MAX_ITEM_LIST_LENGTH=8", "state=WARNING"]


def test_the_whole_study_runs_and_a_rerun_skips_finished_runs(study, tmp_path, capsys):
    assert transfer.main(study) == 0
    first = capsys.readouterr().out
    runs = [json.loads(line) for line in (tmp_path / "work" / "runs.jsonl").read_text().splitlines()]
    keys = [r["key"] for r in runs]
    assert keys[:2] == ["merge/corpus", "pretrain/corpus"]
    assert {k for k in keys if k.startswith("zeroshot/")} == {
        "zeroshot/tgt/corpus", "zeroshot/tgt/random-text", "zeroshot/tgt/ContentKNN-text"}
    assert len([k for k in keys if k.startswith("grid/")]) == 4  # 2 ratios x 1 seed x 2 settings
    assert "grid/tgt/corpus/user_encoder/0.5/7 " in first.replace(":", " ")  # one progress line per run

    # the corpus: 20 users per source but src-b's cap of 10, and the checkpoint's header names its sources with counts and file hashes
    merged = runs[0]["counts"]
    assert merged["users"] == 30
    header = json.loads((tmp_path / "work" / "pretrained" / "corpus" / "pmmrec.json").read_text())
    sources = header["corpus"]["sources"]
    assert [s["name"] for s in sources] == ["src-a", "src-b"]
    assert [s["counts"]["users"] for s in sources] == [20, 10] and all(len(s["sha256"]) == 2 for s in sources)
    # zero-shot: no training step; the pre-trained run loaded the checkpoint
    zero = {r["key"]: r for r in runs if r["key"].startswith("zeroshot/")}
    assert all(r["result"]["curve"] == [] for r in zero.values())
    assert zero["zeroshot/tgt/corpus"]["spec"]["config"]["pretrained"].endswith("pretrained/corpus")

    summary = json.loads((tmp_path / "transfer_corpus.json").read_text())
    results = summary["targets"]["tgt"]["results"]
    assert set(results) == {"scratch/all", "corpus/user_encoder"}
    for setting, by_ratio in results.items():
        assert set(by_ratio) == {"0.5", "1"}
        for cell in by_ratio.values():
            assert cell["ndcg@10"]["n"] == 1 and 0 <= cell["ndcg@10"]["mean"] <= 1
            assert "ratio_vs_contentknn" in cell and len(cell["s_to_scratch_best_valid"]) == 1
            assert ("diff_vs_scratch" in cell) == (setting != "scratch/all")
    anchor = summary["targets"]["tgt"]["zero_shot_anchors"]["corpus"]  # zero-shot next to the same modalities' anchors
    zero = summary["targets"]["tgt"]["zero_shot"]
    assert anchor == {"modalities": ["text"], "model": zero["corpus"]["ndcg@10"],
                      "contentknn": zero["ContentKNN-text"]["ndcg@10"], "random": zero["random-text"]["ndcg@10"]}
    assert summary["corpora"]["corpus"]["source_users"] == {"src-b": 10}
    assert summary["variant"] is None and summary["config_overrides"]["hidden_size"] == 16  # what --set changed
    assert summary["file"] == "transfer_corpus.json"
    pretrain = summary["corpora"]["corpus"]["pretrain"]
    assert pretrain["epochs"] == 1 and pretrain["stopped_by_budget"]  # the budget ended it after the first epoch
    assert "| corpus/user_encoder | 50% |" in first and "### tgt" in first

    # rerun: every run is read back from runs.jsonl, no process started
    assert transfer.main(study) == 0
    second = capsys.readouterr().out
    assert second.count("done before, skipped") == len(keys)
    assert len((tmp_path / "work" / "runs.jsonl").read_text().splitlines()) == len(keys)


def test_bad_input_is_one_line(study, tmp_path, capsys):
    assert transfer.main(study + ["--steps", "merge", "pretrian"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown step(s) ['pretrian']" in err
    assert transfer.main(study + ["--sources", "src-a", "nowhere"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no converted data set ['nowhere']" in err
    assert transfer.main(study + ["--sources", "src-a", "tgt"]) == 2
    assert "must stay unseen" in capsys.readouterr().err
    assert transfer.main(study + ["--source-users", "src-b=many"]) == 2
    assert "--source-users 'src-b=many': use NAME=N" in capsys.readouterr().err
    assert transfer.main(study + ["--source-users", "elsewhere=5"]) == 2
    assert "names ['elsewhere'], which are not sources" in capsys.readouterr().err
    assert not (tmp_path / "work" / "runs.jsonl").exists()


def test_a_subsampled_source_keeps_its_images_and_tells_the_merge_its_counts(tmp_path):
    """--max-source-users: N users of a source, their items, the image folder linked; the merged corpus's meta
    lists the subsample's counts and file hashes, and the images are read through the link."""
    from dataset_tools.convert import run as convert

    make_synthetic_dataset(tmp_path / "data", name="src", n_users=30, n_items=40, seed=1)
    folder = tmp_path / "u10" / "src"
    transfer.subsample(tmp_path / "data" / "src", folder, "src", 10, seed=0)
    meta = json.loads((folder / "src.meta.json").read_text())
    assert meta["counts"]["users"] == 10 and (folder / "src.images").is_symlink()
    merged = convert(["merge", "--inputs", str(folder), "--output", str(tmp_path / "out"), "--name", "c", "--quiet"])
    source = merged["source"]["datasets"][0]
    assert source["counts"] == meta["counts"] and source["sha256"] == meta["files"]["sha256"]
    assert merged["counts"]["items"] == merged["counts"]["images"] == meta["counts"]["items"]


def test_no_pretrain_test_skips_the_corpus_test_and_says_so(study, tmp_path, capsys):
    from bench.suite.report import _corpus_lines

    assert transfer.main(study + ["--steps", "merge", "pretrain", "report", "--no-pretrain-test"]) == 0
    assert "pretrain/corpus: no test evaluation, 1 epochs" in capsys.readouterr().out
    pre = [json.loads(line) for line in (tmp_path / "work" / "runs.jsonl").read_text().splitlines()][1]
    assert pre["spec"]["config"]["eval_test"] is False and pre["result"]["test_recbole"] == {}
    assert (tmp_path / "work" / "pretrained" / "corpus" / "model.safetensors").is_file()  # the components are there
    summary = json.loads((tmp_path / "transfer_corpus.json").read_text())
    assert summary["corpora"]["corpus"]["pretrain"]["test"] is None
    assert "no test evaluation on the corpus" in _corpus_lines(summary)[0]


def test_a_repeated_set_adds_its_overrides_to_the_earlier_ones():
    """``--set a=1 --set b=2`` is ``--set a=1 b=2``: a second ``--set`` does not drop the first (it did, and a
    study meant to run with two overrides ran with one)."""
    args = transfer.parse_args(["--set", "score_tau=0.1", "--set", "transfer_shrink=0.5", "w_nid=0"])
    assert transfer.extra_config(args) == {"score_tau": 0.1, "transfer_shrink": 0.5, "w_nid": 0}
