"""The suite behind BENCHMARKS.md, lowest first: ``labels`` (what a label runs), ``results`` (run identity and
the JSON files under bench/results/), ``ranks`` (target ranks and metrics from a trainer's scores), ``worker``
(one run, in its own process, through ``run_recbole_pmmrec``), ``plots`` and ``report`` (BENCHMARKS.md and
docs/benchmarks-history.md), ``driver`` (the parts; ``python bench/run.py`` calls its ``main``)."""
