"""structlog without rich: when rich is installed, structlog imports it (and pygments) at its own
import, for console tracebacks and pretty-printed locals. The daemon renders neither (JSON lines,
or the plain console renderer with `plain_traceback`; exceptions as dicts without locals), and rich
would cost every process ~30 ms and ~5 MB. While `refuse_rich_to_structlog` is installed, an import
of rich from a structlog module fails as if rich were absent, and structlog falls back to its plain
formatting; rich imports normally from anywhere else (the progress bars).

Invariant: installed by the `backend` and `services` packages' __init__, so before any module of
theirs imports structlog; a process that imported structlog before them (a test runner) keeps the
structlog it has.
"""

import sys
from collections.abc import Sequence
from types import FrameType, ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

REFUSED, IMPORTER = "rich", "structlog"


class _RichRefusedToStructlog:
    """A meta path finder (importlib.abc.MetaPathFinder's protocol; that module alone costs 7 ms)."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> "ModuleSpec | None":
        if fullname.partition(".")[0] == REFUSED and _importer(sys._getframe(1)).partition(".")[0] == IMPORTER:
            raise ModuleNotFoundError(f"{REFUSED} is not imported for {IMPORTER}", name=fullname)
        return None  # the next finder finds it


def _importer(frame: FrameType | None) -> str:
    """The module whose code runs the import: the first frame outside the import machinery."""
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if name != "importlib" and not name.startswith(("importlib.", "_frozen_importlib")):
            return name
        frame = frame.f_back
    return ""


def refuse_rich_to_structlog() -> None:
    """Install the finder (once), unless structlog is imported already."""
    if IMPORTER in sys.modules or any(isinstance(finder, _RichRefusedToStructlog) for finder in sys.meta_path):
        return
    sys.meta_path.insert(0, _RichRefusedToStructlog())
