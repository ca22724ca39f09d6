"""Hydra configs of the acquisition selectors (``selector/<name>.yaml``)."""
