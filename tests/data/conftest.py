"""Real data for the data-following defaults: the ml-100k copy inside the RecBole wheel, edited per test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest
import recbole

ML100K = Path(recbole.__file__).parent / "dataset_example" / "ml-100k"

# one user's rows (lists of the .inter columns), in time order -> the rows to write for that user
Edit = Callable[[int, list], list]


def ml100k_copy(root: Path, name: str, edit: Edit | None = None) -> Path:
    """ml-100k as ``name`` under ``root``; ``edit(k, rows)`` rewrites the k-th user's time-ordered rows (users in
    id order)."""
    folder = root / name
    folder.mkdir(parents=True)
    shutil.copy(ML100K / "ml-100k.item", folder / f"{name}.item")
    lines = (ML100K / "ml-100k.inter").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines[1:]]
    if edit is not None:
        by_user: dict[str, list] = {}
        for row in rows:
            by_user.setdefault(row[0], []).append(row)
        rows = [r for k, user in enumerate(sorted(by_user, key=int))
                for r in edit(k, sorted(by_user[user], key=lambda r: float(r[3])))]
    (folder / f"{name}.inter").write_text("\n".join([lines[0]] + ["\t".join(r) for r in rows]) + "\n",
                                          encoding="utf-8")
    return root


@pytest.fixture
def ml100k_config(tmp_path, tiny_bert_dir):
    """``ml100k_config(name, edit=None, **overrides)``: a config_dict for an edited ml-100k copy (no training, tiny
    random text encoder, every output under tmp)."""
    def make(name: str, edit: Edit | None = None, **overrides) -> dict:
        root = ml100k_copy(tmp_path / "data", name, edit)
        config = dict(data_path=str(root), epochs=0, show_progress=False, use_gpu=False, state="INFO",
                      eval_batch_size=512, checkpoint_dir=str(tmp_path / "saved"), log_dir=str(tmp_path / "logs"),
                      tensorboard_dir=str(tmp_path / "tb"), cache_dir=str(tmp_path / "cache"),
                      text_encoder=str(tiny_bert_dir), text_max_length=12, text_fields=["movie_title", "class"],
                      load_col={"inter": ["user_id", "item_id", "rating", "timestamp"],
                                "item": ["item_id", "movie_title", "release_year", "class"]},
                      MAX_ITEM_LIST_LENGTH=20)
        config.update(overrides)
        return config

    return make
