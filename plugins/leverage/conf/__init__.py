"""Hydra configs of the leverage selector (``selector/leverage.yaml``)."""
