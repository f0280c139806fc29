"""Config merging order: overall < model < dataset < files < config_dict < command line."""

import shutil
from pathlib import Path
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


# ------------------------------------------------------------------ one validated settings object

@pytest.mark.parametrize("given", ["[text]", '"[text]"', "text", "['text']", "[text, image]", "text,image",
                                   "['text', 'image']"])
def test_list_keys_parse_one_way_from_the_command_line(synth, pmmrec_config, monkeypatch, given):
    """``--modalities=[text]`` (what the shell passes for ``--modalities="[text]"``) and every other spelling."""
    monkeypatch.setattr(sys, "argv", ["run", f"--modalities={given}"])
    config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth))
    expected = ["text", "image"] if "image" in given else ["text"]
    assert config["modalities"] == expected and config.settings.modalities == expected


def test_list_keys_parse_the_same_from_yaml_and_the_config_dict(synth, pmmrec_config, tmp_path):
    (tmp_path / "m.yaml").write_text("modalities: [text]\ntransfer_components: '[user_encoder]'\n")
    from_yaml = load_config("PMMRec", synth.name, [str(tmp_path / "m.yaml")], pmmrec_config(synth))
    from_dict = load_config("PMMRec", synth.name, config_dict=pmmrec_config(
        synth, modalities="text", transfer_components="user_encoder"))
    assert from_yaml["modalities"] == from_dict["modalities"] == ["text"]
    assert from_yaml["transfer_components"] == from_dict["transfer_components"] == ["user_encoder"]


@pytest.mark.parametrize("key,value,allowed", [
    ("hidden_size", "abc", "an integer >= 1"), ("learning_rate", "abc", "a number >= 0"),
    ("MAX_ITEM_LIST_LENGTH", "0", "an integer >= 1"), ("train_batch_size", "0", "an integer >= 1"),
    ("text_max_length", "0", "an integer >= 2"), ("nproc", "0", "an integer >= 1"),
    ("modalities", "[txt]", "a list of text, image"), ("projection", "cubic", "one of linear, mlp"),
    ("exclude_history", "maybe", "True or False"), ("threads", "-1", "an integer >= 1"),
    ("learning_rate", "nan", "a number >= 0"), ("fusion_dropout", "1", "a number in [0, 1)")])
def test_a_bad_value_is_an_error_naming_key_value_and_what_is_allowed(synth, pmmrec_config, capsys, tmp_path,
                                                                      key, value, allowed):
    """Before: library tracebacks (hidden_size, learning_rate, MAX_ITEM_LIST_LENGTH, train_batch_size) or a silent
    replacement (text_max_length, nproc). Now the command line exits with 2 and one line that says what to do."""
    from recbole_pmmrec.cli import main

    argv = ["--model=PMMRec", f"--dataset={synth.name}", f"--data_path={synth.root}", "--use_gpu=False",
            f"--checkpoint_dir={tmp_path}/ckpt", f"--log_dir={tmp_path}/logs", f"--{key}={value}"]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{key}=" in err and value.strip("[]") in err and allowed in err, err
    assert "Traceback" not in err


def test_a_key_says_for_which_models_tilde_is_a_value():
    """train_batch_size: ~ is decided from the data for PMMRec only; the schema itself says so, in the error and in
    what is allowed, instead of a special case after the key loop."""
    from recbole_pmmrec.errors import PMMRecConfigError
    from recbole_pmmrec.settings import KEYS, check

    key = next(k for k in KEYS if k.name == "train_batch_size")
    assert check(key, "~", "PMMRec") is None and check(key, "128", "SASRec") == 128
    assert "decided from the data" in key.allowed("PMMRec") and "~" not in key.allowed("SASRec")
    with pytest.raises(PMMRecConfigError, match=r"train_batch_size is not set for model SASRec: it must be an "
                                                r"integer >= 1$"):
        check(key, None, "SASRec")
    hidden = next(k for k in KEYS if k.name == "hidden_size")  # ~ for PMMRec since 0.7, a number for the rest
    assert check(hidden, "~", "PMMRec") is None
    with pytest.raises(PMMRecConfigError, match="hidden_size is not set for model SASRec: it must be an integer >= 1$"):
        check(hidden, None, "SASRec")
    layers = next(k for k in KEYS if k.name == "n_layers")
    with pytest.raises(PMMRecConfigError, match="n_layers is not set: it must be an integer >= 1$"):
        check(layers, None, "PMMRec")


def test_settings_are_typed_and_written_back(synth, pmmrec_config, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["run", "--hidden_size=48", "--learning_rate=1e-3", "--threads=1",
                                      "--exclude_history=false"])
    config = load_config("PMMRec", synth.name, config_dict=pmmrec_config(synth, fusion_heads=2))
    s = config.settings
    assert (s.hidden_size, s.learning_rate, s.threads, s.exclude_history) == (48, 0.001, 1, False)
    assert config["hidden_size"] == 48 and isinstance(config["learning_rate"], float)
    assert set(s.architecture()) >= {"hidden_size", "modalities", "projection", "text_encoder"}
    assert "learning_rate" not in s.architecture() and "seed" not in s.architecture()


def test_every_plugin_key_has_its_default_in_the_yaml_only():
    """No key of the schema lacks a default: each is in properties/overall.yaml, content.yaml or a plugin model's
    yaml (the code has no `config[k] or default` fallbacks left)."""
    import re

    from recbole_pmmrec.settings import KEYS

    root = config_module.properties_dir()
    ours = {}
    for file in (root / "overall.yaml", root / "content.yaml", *sorted((root / "model").glob("*.yaml"))):
        ours.update(yaml.safe_load(file.read_text()) or {})
    recbole_keys = {"epochs", "train_batch_size", "eval_batch_size", "learning_rate", "weight_decay",
                    "MAX_ITEM_LIST_LENGTH", "stopping_step", "eval_step", "seed", "checkpoint_dir"}
    missing = [k.name for k in KEYS if k.name not in ours and k.name not in recbole_keys]
    assert not missing, missing
    package = Path(config_module.__file__).parent
    plugin = {k.name for k in KEYS} - recbole_keys
    fallbacks = [f"{p.name}: {key}" for p in package.rglob("*.py")
                 for key in re.findall(r"config\[\"(\w+)\"\] or [\w\"'.-]+", p.read_text())
                 if key in plugin and key != "world_size"]  # world_size ~ means "nproc", said in overall.yaml
    assert not fallbacks, fallbacks


def test_the_plugin_reads_no_key_outside_its_schema():
    """Every key the plugin's code reads from a config is in settings.KEYS or known to RecBole, so that
    known_keys() (the typo check) needs no scan of the plugin's source."""
    from recbole_pmmrec.settings import KEYS

    package = Path(config_module.__file__).parent
    read = {key for p in package.rglob("*.py")
            for key in config_module._CONFIG_READ.findall(p.read_text(encoding="utf-8"))}
    known = config_module.known_keys()
    assert {k.name for k in KEYS} <= known
    assert read - known <= {"key"}, sorted(read - known)  # "key": the docstring's example


def test_the_readme_spelling_works_from_a_real_shell(synth, tiny_bert_dir, tmp_path):
    """``--modalities="[text]"`` typed in bash (the README's spelling) runs PMMRec on text only."""
    import subprocess

    repo = Path(config_module.__file__).resolve().parents[1]
    command = (f'"{sys.executable}" "{repo / "run_recbole_pmmrec.py"}" --model=PMMRec --dataset={synth.name} '
               f'--data_path="{synth.root}" --modalities="[text]" --epochs=0 --use_gpu=False --state=INFO '
               f'--text_encoder="{tiny_bert_dir}" --text_max_length=12 --hidden_size=32 --inner_size=64 '
               f'--cache_dir="{tmp_path}/cache" --checkpoint_dir="{tmp_path}/saved" --log_dir="{tmp_path}/log" '
               f'--tensorboard_dir="{tmp_path}/tb" --text_fields="[title,description]" --threads=1')
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "modalities=['text']" in done.stderr  # the one log line of the decision
    assert '"test_result"' in done.stdout
