"""Errors for unusable report input (results, baselines, names): the CLI exits with code 2."""


class ReportError(Exception):
    """A results or baseline file, or a name, that the reports cannot use."""
