"""SMOTE at scale: selectkit (exact and approximate search) side by side with imbalanced-learn.

    python scripts/bench_smote.py --sizes 100000x32,300000x64,1000000x128

Each method runs in its own subprocess on the same data; see `selectkit_plugins.smote.bench`.
"""

import sys

from selectkit_plugins.smote.bench import main

if __name__ == "__main__":
    sys.exit(main())
