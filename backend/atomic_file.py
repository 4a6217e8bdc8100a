"""Files replaced all or nothing.

Invariant: a path either keeps its previous content or holds the new one entirely, whatever
happens meanwhile (kill -9, power loss): the new content is written beside it (a hidden
`.NAME.tmp.SUFFIX` in the same folder, so the rename never crosses a file system), flushed to
disk, optionally checked, renamed over it, and the folder is flushed too. No temporary file is
left behind, whatever `write` or `check` raised.
"""

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

TEMPORARY_MARK = ".tmp"


def temporary_beside(path: Path) -> Path:
    """Where path's next content is written first: hidden, same folder, same extension (readers
    that go by the extension read it as the file it will become)."""
    return path.with_name(f".{path.stem}{TEMPORARY_MARK}{path.suffix}")


def replace_atomically(path: Path, write: Callable[[BinaryIO], object],
                       check: Callable[[Path], None] | None = None) -> None:
    """path's content replaced by what `write` writes; `check(temporary)` may refuse it (by
    raising) before it is put in place."""
    temporary = temporary_beside(path)
    try:
        with temporary.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if check is not None:
            check(temporary)
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power loss
    finally:
        os.close(folder)
