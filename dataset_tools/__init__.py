"""Converters from raw recommendation data to RecBole atomic files plus an image folder.

Run ``python -m dataset_tools.convert FORMAT --output DIR ...``; see ``dataset_tools/README.md``.
Formats: ``movielens-posters``, ``microlens``, ``pmmrec``, ``amazon2018``, ``tsv``, ``merge``.
"""

__version__ = "1.1.0"

__all__ = ["__version__"]
