"""Exceptions raised by recbole-pmmrec.

Every message names the file, item or key at fault and says what to do about it.
"""


class PMMRecError(Exception):
    """Base class of all recbole-pmmrec errors."""


class PMMRecDataError(PMMRecError):
    """Input data (atomic files, images, texts, caches) that cannot be used as given."""


class PMMRecConfigError(PMMRecError):
    """A configuration key, model name or dataset name that cannot be used as given."""


class PMMRecCheckpointError(PMMRecError):
    """A checkpoint or weight file that does not match, is corrupt, or is not trusted."""
