"""``python -m dataset_tools.convert merge``: several datasets as one, users and items kept apart by domain."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from dataset_tools.convert import main, run
from recbole_pmmrec.errors import PMMRecDataError
from recbole_pmmrec.synthetic import make_synthetic_dataset


@pytest.fixture
def two_domains(tmp_path):
    """Domain a: 12 users, 10 items with images; domain b: 8 users, 6 items, no images, other text fields.
    Both use the item tokens 1.. and user tokens u1..: only the merge keeps them apart."""
    a = make_synthetic_dataset(tmp_path / "src", name="a", n_users=12, n_items=10, seed=1)
    b = make_synthetic_dataset(tmp_path / "src", name="b", n_users=8, n_items=6, seed=2, images=False)
    item = b.folder / "b.item"
    frame = pd.read_csv(item, sep="\t", dtype=str, keep_default_na=False)
    frame = frame.rename(columns={"description:token_seq": "tags:token_seq"})
    frame.to_csv(item, sep="\t", index=False)
    return a, b


def _read(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def test_merge_prefixes_tokens_unions_text_and_copies_images(two_domains, tmp_path):
    a, b = two_domains
    out = tmp_path / "out"
    meta = run(["merge", "--inputs", str(a.folder), str(b.folder), "--output", str(out), "--name", "ab", "--quiet"])
    folder = out / "ab"
    inter, item = _read(folder / "ab.inter"), _read(folder / "ab.item")
    assert meta["counts"]["interactions"] == a.n_interactions + b.n_interactions == len(inter)
    used = {f"{d.name}_{i}" for d in (a, b) for i in _read(d.folder / f"{d.name}.inter")["item_id:token"]}
    assert meta["counts"]["users"] == 20 and meta["counts"]["items"] == len(used)
    assert list(item.columns) == ["item_id:token", "title:token_seq", "description:token_seq", "tags:token_seq"]
    assert set(item["item_id:token"]) == used  # items without interactions are dropped, as by every converter
    assert {u.split("_")[0] for u in inter["user_id:token"]} == {"a", "b"}
    # each user's items come from its own domain: the domains never mix in one sequence
    assert (inter["user_id:token"].str[0] == inter["item_id:token"].str[0]).all()
    # text: domain a's description stays, domain b's tags stay, the missing field is empty
    src_a, src_b = _read(a.folder / "a.item"), _read(b.folder / "b.item")
    row = item.set_index("item_id:token")
    assert row.loc["a_3", "description:token_seq"] == src_a.set_index("item_id:token").loc["3", "description:token_seq"]
    assert row.loc["b_2", "tags:token_seq"] == src_b.set_index("item_id:token").loc["2", "tags:token_seq"]
    assert row.loc["b_2", "description:token_seq"] == "" and row.loc["a_3", "tags:token_seq"] == ""
    images = sorted(p.name for p in (folder / "ab.images").iterdir())
    assert images == sorted(f"{i}.jpg" for i in used if i.startswith("a_")) and meta["counts"]["images"] == len(images)
    sources = meta["source"]["datasets"]
    assert [(s["name"], s["prefix"]) for s in sources] == [("a", "a"), ("b", "b")]
    assert json.loads((folder / "ab.meta.json").read_text())["format"] == "merge"


def test_merged_dataset_loads_in_recbole_and_names_its_sources(two_domains, tmp_path):
    from recbole_pmmrec.quick_start import load_config
    from recbole_pmmrec.transfer import source_datasets
    from recbole_pmmrec.utils import create_dataset

    a, b = two_domains
    out = tmp_path / "out"
    assert main(["merge", "--inputs", str(a.folder), str(b.folder), "--prefixes", "src1", "src2",
                 "--output", str(out), "--name", "ab", "--quiet"]) == 0
    config = load_config("SASRec", "ab", config_dict={"data_path": str(out), "use_gpu": False, "state": "WARNING",
                                                      "checkpoint_dir": str(tmp_path / "saved")})
    dataset = create_dataset(config)
    n_items = sum(_read(d.folder / f"{d.name}.inter")["item_id:token"].nunique() for d in (a, b))
    assert dataset.user_num - 1 == 20 and dataset.item_num - 1 == n_items
    assert dataset.inter_num == a.n_interactions + b.n_interactions
    assert source_datasets(config) == ["ab", "ab:a", "ab:b"]


def test_merge_refuses_repeated_prefixes_and_missing_inputs(two_domains, tmp_path):
    a, b = two_domains
    with pytest.raises(PMMRecDataError, match="repeat a prefix"):
        run(["merge", "--inputs", str(a.folder), str(b.folder), "--prefixes", "x", "x", "--output", str(tmp_path / "o")])
    with pytest.raises(PMMRecDataError, match=r"nosuch/nosuch.item does not exist"):
        run(["merge", "--inputs", str(a.folder), str(tmp_path / "nosuch"), "--output", str(tmp_path / "o")])
