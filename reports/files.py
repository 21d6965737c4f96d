"""Writing files so that a reader never sees half of one: each file is written to a temporary
name of its own (process id and a random token, so concurrent runs never share one) beside the
target, then renamed over it in one atomic step. A run killed mid-write leaves the old file."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def write_atomic(target: Path | str, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)` (a path with the target's suffix), then rename it to `target`."""
    target = Path(target)
    temporary = target.with_name(f".{target.stem}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
                                 f"{target.suffix}")
    try:
        write(temporary)
        with open(temporary, "rb+") as written:  # on disk before the rename makes it visible
            os.fsync(written.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    _sync_folder(target.parent)
    return target


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the platform can open folders)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def write_text_atomic(target: Path | str, text: str) -> Path:
    """`target.write_text(text)`, atomically."""
    return write_atomic(target, lambda path: path.write_text(text))
