"""Hydra config of the sensitivity sampling selector (``selector/sensitivity.yaml``)."""
