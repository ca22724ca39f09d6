"""Built-in selector plugins, each in its own folder with its code, Hydra configs and tests.

They register through the ``selectkit.selectors`` entry-point group, exactly as an external plugin does.
"""
