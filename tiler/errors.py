"""The errors tiler reports to its users.

Every failure a user can cause or fix (a bad input file, an invalid pipeline
file, an output directory in the way) is a :class:`TilerError`: the command
line prints its message on one line and exits non-zero, without a traceback.
Anything else is a bug in tiler and keeps its traceback.
"""

from __future__ import annotations


class TilerError(Exception):
    """A problem the user can fix; its message names the file or key at fault."""

    exit_code = 1


class InputError(TilerError):
    """The input raster is missing, unreadable or not what tiler expects."""

    exit_code = 2


class NotGeoreferenced(InputError):
    """The input has no map coordinates (no geotransform, or no CRS): ``--pixel-only`` reads it."""


class ConfigError(TilerError):
    """The pipeline file is invalid; the message names the key and what is allowed."""

    exit_code = 2


class OutputError(TilerError):
    """The output directory cannot be written as asked."""

    exit_code = 3


class ModelError(TilerError):
    """A user's model (``model: {callable: ...}``) returned something that is not a mask."""

    exit_code = 4


class TileError(TilerError):
    """A tile's task failed (an unexpected error in it, or every worker running it died).

    The message names the tile and its window; the original error is the ``__cause__``.
    """

    exit_code = 5


class TilerWarning(UserWarning):
    """Something the user may want to fix, though the run goes on (a striped input, say)."""
