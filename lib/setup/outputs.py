"""The files a run promises (claims JSON, report, CSV, tables JSON, figure): checked writable before any
model work, each written atomically, so an hour's run never ends in a traceback that loses its results."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from lib.errors import ConfigError


def check_output(path: str | Path, option: str) -> Path:
    """`path` as a Path once a file can be written there (its directories created); ConfigError naming the
    option, the path and why not: a directory, under a file, or not writable."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(f"{option} {str(path)!r} is a directory; expected the path of a file to write")
    above = next((a for a in p.parents if a.exists()), Path("."))
    if not above.is_dir():
        raise ConfigError(f"{option} {str(path)!r} cannot be written: {str(above)!r} is a file, not a directory")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p.parent, prefix=f".{p.name}.", suffix=".probe"):
            pass
    except OSError as e:
        raise ConfigError(f"{option} {str(path)!r} cannot be written: {e.strerror or e}") from None
    return p


def write_atomic(path: str | Path, data: str | bytes | Callable[[Path], object]) -> Path:
    """Write `data` to a temporary file beside `path`, then rename it over `path`: a reader (or a Ctrl-C)
    sees the old file or the whole new one, never half of it. data: text, bytes, or a function that
    writes the temporary file it is given (safetensors' save_file)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if not callable(data):
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        if callable(data):
            data(Path(tmp))
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
