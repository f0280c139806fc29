"""recbole-pmmrec: PMMRec, a pure multi-modality sequential recommender, as a RecBole plugin.

Train and evaluate with ``run_recbole_pmmrec.py`` (or :func:`recbole_pmmrec.quick_start.run_recbole_pmmrec`);
the fixes that make recbole 1.2.1 run on today's libraries (:mod:`recbole_pmmrec.compat`) are applied by the
config and the factories when they are first used, not by importing this package.
"""

__version__ = "0.8.0.dev0"
