"""Benchmark code behind the ``scripts/bench_*.py`` entry points: measurement only, never shipped in the
installed package. Run the scripts from the repository root (``python scripts/bench_knn.py``), which
puts this folder's parent on the import path."""
