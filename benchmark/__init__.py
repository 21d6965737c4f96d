"""rubench harness: checkpoints, data, suites, tasks, runner and results store."""

from importlib import resources

__version__ = "0.2.0"


def builtin_suites() -> list[str]:
    """Names of the suites shipped inside the package (read without importing torch)."""
    folder = resources.files("benchmark") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))
