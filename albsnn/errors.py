"""Errors a user can act on.

Everything the CLI turns into "one clear line, exit code 2" derives from :class:`AlbsnnError`;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["AlbsnnError", "ConfigError", "DataError", "ModelFileError"]


class AlbsnnError(Exception):
    """A problem with the user's input: the message says what, where and what to do."""


class ConfigError(AlbsnnError, ValueError):
    """A configuration value is out of range or unknown."""


class DataError(AlbsnnError):
    """A dataset is missing, corrupt or unreadable."""


class ModelFileError(AlbsnnError):
    """A model file is not an ALBSNN export, or is damaged."""
