"""Leverage-score sampling: least squares on Fashion-MNIST (leverage against uniform, pivotal against
independent), exact scores against numpy's QR at 1M x 64, sketched scores for d >= 256.

    python scripts/bench_leverage.py [--parts ls exact sketch] [--seeds 20] [--n 1000000] [--out outputs/bench_leverage]

Every comparison runs side by side in one process; see `scripts/benchlib/leverage.py`.
"""

import sys

from benchlib.leverage import main

if __name__ == "__main__":
    sys.exit(main())
