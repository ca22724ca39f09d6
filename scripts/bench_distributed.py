"""Selection over several processes: peak private memory per rank, bytes sent, collectives' overhead.

    python scripts/bench_distributed.py [--data DIR] [--rows 20000000] [--d 64] [--methods margin knn sensitivity leverage random]
                                        [--worlds 4] [--parts memory time] [--repeats 3] [--out outputs/bench_distributed]

Writes a clustered pool of memory-mapped ``.npy`` files once under ``--data``, runs every method as
separate rank processes (``torch.distributed.run`` and ``selectkit-select``), and prints markdown
tables (also ``<out>/bench_distributed.md`` and ``.json``); see `scripts/benchlib/distributed.py`.
``bench_distributed.py knn-rank ...`` is one rank of the kNN run, started by the benchmark itself;
``bench_distributed.py report <out>/bench_distributed.json`` prints a run's tables again, and
``bench_distributed.py scale-model`` the projection of docs/distributed.md ("Scale model").
"""

import sys

from benchlib.distributed import main

if __name__ == "__main__":
    sys.exit(main())
