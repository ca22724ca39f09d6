"""Hydra configs of the hard-negative selectors (``selector/hard_negatives.yaml``)."""
