"""One-off diagnostics, each run as a script (``python bench/studies/NAME.py --help``); each writes its own
``bench/results/NAME.json``. They use ``bench.suite`` (ranks, results), never the other way round."""
