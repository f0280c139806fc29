"""The benchmarks: ``bench/suite`` (what ``python bench/run.py`` runs and BENCHMARKS.md is made of) and
``bench/studies`` (one-off diagnostics, each a script of its own). Not part of the installed package."""
