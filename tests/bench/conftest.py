"""bench/ is not installed: put the repository on sys.path so that ``bench.suite`` and ``bench.studies`` import."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
