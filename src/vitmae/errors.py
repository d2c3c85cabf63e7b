"""The errors vitmae raises for its users: a mistake they can fix in a config, a flag, a path
or a data file. The command line prints these as one line (`vitmae: error: ...`, exit 2);
every other exception is a bug of vitmae or of a library and keeps its traceback.

A leaf module: anything in the package may raise these, the models included.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; the message says what and where."""


class ConfigError(UserError, ValueError):
    """A preset or override that names an unknown key, has a wrong type or a bad value."""


class UsageError(UserError, ValueError):
    """A command-line flag or argument that does not fit the command or the model."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint or weights file that is missing, corrupt, unsafe or does not fit the
    model."""


class PathError(UserError, OSError):
    """A path the user chose that cannot be created, read or written."""
