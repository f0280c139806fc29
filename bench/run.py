"""The benchmark suite's command (the code is in ``bench/suite/``; ``--help`` lists the parts and options):

    python bench/run.py [quality|coldstart|speed|scaling|salvage|stamp|report|all] [--seeds 3] [--data-dir DIR] [--quick]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.suite.driver import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
