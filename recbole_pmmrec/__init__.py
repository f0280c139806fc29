"""recbole-pmmrec: PMMRec, a pure multi-modality sequential recommender, as a RecBole plugin."""

from recbole_pmmrec import compat as _compat

_compat.apply()

__version__ = "0.5.5"
