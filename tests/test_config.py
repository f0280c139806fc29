"""Config merging order: overall < model < dataset < files < config_dict < command line."""

import shutil
import sys

import pytest
import yaml

from recbole_pmmrec import config as config_module
from recbole_pmmrec.quick_start import load_config

LAYERS = ["overall", "model", "dataset", "file", "dict", "cmd"]


@pytest.fixture
def layered(tmp_path, monkeypatch, synth, quick_config):
    """Put a `probe` key (and `n_layers`) in every layer; return a function that builds the config
    with only the layers named."""
    props = tmp_path / "props"
    shutil.copytree(config_module.properties_dir(), props)
    monkeypatch.setattr(config_module, "properties_dir", lambda: props)

    def build(layers):
        def write(path, layer):
            data = yaml.safe_load(path.read_text()) if path.exists() else {}
            data = data or {}
            if layer in layers:
                data["probe"] = layer
            else:
                data.pop("probe", None)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump(data))

        write(props / "overall.yaml", "overall")
        write(props / "model" / "SASRec.yaml", "model")
        write(props / "dataset" / "synth.yaml", "dataset")
        files = []
        if "file" in layers:
            (tmp_path / "extra.yaml").write_text("probe: file\n")
            files = [str(tmp_path / "extra.yaml")]
        config_dict = quick_config(synth)
        if "dict" in layers:
            config_dict["probe"] = "dict"
        sys.argv = ["run"] + (["--probe=cmd"] if "cmd" in layers else [])
        return load_config("SASRec", "synth", config_file_list=files, config_dict=config_dict)

    return build


def test_each_layer_overrides_the_ones_below(layered):
    for top in range(len(LAYERS)):
        config = layered(LAYERS[: top + 1])
        assert config["probe"] == LAYERS[top], f"with layers {LAYERS[: top + 1]}"


def test_plugin_overall_sets_the_sequential_protocol(synth, quick_config):
    config = load_config("GRU4Rec", "synth", config_dict=quick_config(synth))
    assert config["eval_args"]["split"] == {"LS": "valid_and_test"}
    assert config["eval_args"]["order"] == "TO" and config["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert config["loss_type"] == "CE" and config["train_neg_sample_args"]["distribution"] == "none"
    assert config["valid_metric"] == "NDCG@10" and config["topk"] == [10, 20]


def test_recbole_model_yaml_wins_over_plugin_overall(synth, quick_config):
    # RecBole's BPR model yaml says loss_type BPR-style pairwise; the plugin's overall CE must not override it.
    config = load_config("BPR", "synth", config_dict=quick_config(synth, train_neg_sample_args={
        "distribution": "uniform", "sample_num": 1}))
    assert config["MODEL_INPUT_TYPE"].name == "PAIRWISE"


def test_bundled_ml100k_gets_plugin_dataset_defaults(quick_config):
    config = load_config("SASRec", "ml-100k", config_dict={"use_gpu": False})
    assert config["MAX_ITEM_LIST_LENGTH"] == 20
    assert "dataset_example" in config["data_path"]
    assert config["load_col"]["item"][:1] == ["item_id"]
