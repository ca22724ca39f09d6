"""SMOTE at scale: selectkit (exact and approximate search) side by side with imbalanced-learn.

    python scripts/bench_smote.py --sizes 100000x32,300000x64,1000000x128

Each method runs in its own subprocess on the same data; see `scripts/benchlib/smote.py`.
"""

import sys

from benchlib.smote import main

if __name__ == "__main__":
    sys.exit(main())
