"""Commands printed as hints must work when pasted into the user's shell.

``trigger-sanity`` usually lives in the project's virtualenv (``.venv/bin``),
which is not on the PATH of the shell that ran ``make demo``: a hint names the
command the way this shell can run it.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path


def cli() -> str:
    """How to run ``trigger-sanity`` from the current directory's shell."""
    script = Path(sys.executable).parent / "trigger-sanity"
    on_path = shutil.which("trigger-sanity")
    if on_path is not None and script.exists() and Path(on_path).resolve() == script.resolve():
        return "trigger-sanity"
    if script.exists():
        try:
            rel = os.path.relpath(script)
        except ValueError:  # another drive (Windows)
            rel = str(script)
        return shlex.quote(rel if not rel.startswith("..") else str(script))
    return f"{shlex.quote(sys.executable)} -m streams.cli"


def command(*args: str, env: dict[str, str] | None = None) -> str:
    """A pasteable command line: ``VAR=value ... trigger-sanity ARGS``."""
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in (env or {}).items())
    line = " ".join([cli(), *(shlex.quote(a) for a in args)])
    return f"{prefix} {line}" if prefix else line
