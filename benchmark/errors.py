"""Errors for bad user input: each names the file or setting at fault and what to do about it."""


class RubenchError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""


class CheckpointError(RubenchError):
    """A checkpoint that cannot be discovered, trusted, described or loaded."""


class DataError(RubenchError):
    """A data set file that is missing or malformed."""


class SuiteError(RubenchError):
    """A suite file or task configuration that is invalid."""


class ModelOutputError(RubenchError):
    """A model produced outputs no metric can be computed from (NaN or infinite logits)."""


class StoreError(RubenchError):
    """The results store or an output file cannot be written (locked, read-only, disk full)."""
