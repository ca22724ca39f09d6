"""Exceptions raised by selectkit.

Every error a user can fix carries a one-line message that names the setting to change.
"""


class SelectkitError(Exception):
    """Base class of every error selectkit raises on purpose."""


class ConfigError(SelectkitError, ValueError):
    """A setting has a value selectkit cannot work with; the message names the setting."""


class DataNotFoundError(ConfigError):
    """A dataset could not be found in any of the places selectkit looks."""


class MissingDependencyError(SelectkitError, ImportError):
    """An optional extra that a setting needs is not installed; the message says what to install."""


class SelectionError(SelectkitError, RuntimeError):
    """A selector returned a result that breaks the `Selection` contract."""
