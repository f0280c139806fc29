"""bench/studies/scale.py end to end on tiny synthetic data: PMMRec and SASRec start together, one thread each,
through bench/suite/worker.py's fit mode; the JSON has both models' times, peak RSS and the ratios, and the
report's ``## Scale`` section renders a table from it."""

import json

from bench.studies import scale
from bench.suite.report import section_scale
from recbole_pmmrec.synthetic import make_synthetic_dataset, make_tiny_text_encoder


def test_scale_runs_both_models_side_by_side_and_the_report_shows_it(tmp_path, capsys):
    data = tmp_path / "data"
    make_synthetic_dataset(data, name="tiny", n_users=30, n_items=40, seed=1, images=False, max_len=10)
    encoder = make_tiny_text_encoder(tmp_path / "tiny_bert")
    results = tmp_path / "results"
    out = results / "scale_tiny.json"
    argv = ["--dataset", "tiny", "--data-dir", str(data), "--epochs", "1", "--work-dir", str(tmp_path / "work"),
            "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
            "--set", f"text_encoder={encoder}", "text_max_length=8", "hidden_size=16", "inner_size=32", "n_layers=1",
            "train_batch_size=16", "eval_batch_size=64", "MAX_ITEM_LIST_LENGTH=8"]
    assert scale.main(argv) == 0, capsys.readouterr()

    result = json.loads(out.read_text())
    assert set(result["models"]) == {"PMMRec", "SASRec"}
    for name, m in result["models"].items():
        assert m["status"] == "done" and m["epochs"] == 1 and m["threads"] == 1
        assert m["epoch_s"][0] > 0 and m["epoch_s_mean_after_first"] > 0 and m["eval_s_mean"] > 0
        assert m["setup_s"] > 0 and m["peak_rss_bytes"] > 0 and m["peak_rss_bytes_process"] > 0
        assert len(m["valid_ndcg@10"]) == 1
        assert m["config"]["cache_dir"] == str(tmp_path / "cache") and m["config"]["eval_step"] == 1
        assert 0 <= m["epochs_side_by_side"] <= 1
    ratios = result["ratios"]
    assert ratios["of"] == "PMMRec/SASRec" and all(ratios[k] > 0 for k in ("epoch_s", "eval_s", "peak_rss"))
    assert result["pmmrec_peak_rss_target"]["met"] is True  # tiny data, tiny encoder
    assert result["machine"]["cpus"] and len(result["machine"]["loadavg_at_end"]) == 3
    assert result["command"].startswith("python bench/studies/scale.py --dataset tiny") and result["date"]

    text = section_scale(results)
    assert text.startswith("## Scale") and "| measure | tiny (" in text
    assert "| PMMRec peak RSS <= 4 GB | met (" in text and "side by side" in text
    assert f"| s/epoch, PMMRec / SASRec | {ratios['epoch_s']:.2f}x |" in text
    assert "Not measured yet" in section_scale(tmp_path / "nowhere")


def test_missing_data_is_one_line(tmp_path, capsys):
    assert scale.main(["--dataset", "absent", "--data-dir", str(tmp_path), "--work-dir", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no converted data set" in err
