"""Hydra configs of the tuple selectors (``selector/random_tuples.yaml``)."""
