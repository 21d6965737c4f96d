"""rubench harness: checkpoints, data, suites, tasks, runner and results store."""

__version__ = "0.1.0"
