"""Hydra configs of the SMOTE family (``selector/<name>.yaml``), exposed through ``selectkit.configs``."""
