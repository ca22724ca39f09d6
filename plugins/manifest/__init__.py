"""A stage that trains on a selection written earlier: a manifest of `selectkit-select` or of a run."""

from selectkit_plugins.manifest.selector import FromManifest

__all__ = ["FromManifest"]
