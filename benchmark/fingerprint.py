"""Cheap fingerprints of input files and folders, so stored results are re-keyed when they change.

A file is fingerprinted by (size, modification time in ns), a folder by that of every file below
it with its relative path — the quick check `make` and `rsync` use: replacing, editing, adding or
removing a file changes it, reading 10 GB of images each run does not happen. The absolute
location is left out, so moving a data folder keeps its stored results. Walking a folder of a
million files takes seconds: the runner computes each fingerprint once per run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path


def _stat(path: Path, name: str) -> tuple[str, int, int]:
    """(name, size, mtime in ns); an unreadable entry (a broken link) is marked, not fatal."""
    try:
        stat = path.stat()
    except OSError:
        return name, -1, -1
    return name, stat.st_size, stat.st_mtime_ns


def _entries(path: Path) -> list[tuple[str, int, int]]:
    if not path.is_dir():
        return [_stat(path, "")]
    found, seen = [], set()
    for folder, subfolders, files in os.walk(path, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a symlink cycle, or a folder linked twice: walk it once
            subfolders.clear()
            continue
        seen.add(real)
        found += [_stat(Path(folder) / name, (Path(folder) / name).relative_to(path).as_posix())
                  for name in files]
    return sorted(found)


def fingerprint(paths: Iterable[Path]) -> str:
    """One hash over `paths` (files or folders, in order); a missing path hashes as missing."""
    digest = hashlib.sha256()
    for path in map(Path, paths):
        if not path.exists():
            digest.update(b"missing\n")
            continue
        for name, size, mtime_ns in _entries(path):
            digest.update(f"{name}\0{size}\0{mtime_ns}\n".encode())
        digest.update(b"end\n")
    return digest.hexdigest()
