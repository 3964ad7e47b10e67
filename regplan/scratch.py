"""Unnamed temporary files for what grows with the tree (a plan's targets, the tree's
index): under ``TMPDIR``, readable by this process only, gone when it ends, even when
it is killed."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from typing import IO

from regplan.errors import SpoolError


def write(chunks: Iterable[bytes], what: str) -> IO[bytes]:
    """A new unnamed file holding ``chunks``, open for ``os.pread``; a one-line
    SpoolError naming ``what`` when it cannot be written (no room, no TMPDIR)."""
    f = None
    try:
        f = tempfile.TemporaryFile(prefix="regplan-")  # noqa: SIM115 (returned open)
        for chunk in chunks:
            f.write(chunk)
        f.flush()
    except OSError as e:
        if f is not None:
            f.close()
        raise SpoolError(
            f"cannot keep {what} in {tempfile.gettempdir()}: {e.strerror} "
            "(set TMPDIR to a folder with room)"
        ) from None
    return f
