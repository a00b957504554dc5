"""`fleming container`: an Apptainer definition file for the jobs' software, pinned to the lock.

constraints.txt (the project's lock of every library, at the versions the goldens and figures were
made with) is copied into the definition, so the image installs exactly those versions whatever
the index holds on the day it is built. Pure: lock text in, definition text out; the command
reads the file and writes the result.
"""

from __future__ import annotations

import re
import sys

from fleming_dsl import __version__
from fleming_dsl.errors import FlemingError

# `name==version`, nothing else: the pins go into a quoted heredoc of the build script, and a
# line that is not a plain pin (an option, a URL, a shell character) is not copied.
_PIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.+!_-]*")


class LockError(FlemingError):
    """A line of the lock that is neither a pin, a comment nor blank."""


def pins(lock_text: str, where: str = "constraints.txt") -> list[str]:
    """The `name==version` lines of a lock, in order; comments and blank lines are skipped."""
    found = []
    for number, raw in enumerate(lock_text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN.fullmatch(line):
            raise LockError(f"{where}:{number}: expected a pin such as torch==2.13.0, got {line!r}")
        found.append(line)
    return found


def python_image(version: tuple[int, int, int] | None = None) -> str:
    """The base image: Debian slim with the Python this fleming runs on, to the patch release."""
    major, minor, micro = version or sys.version_info[:3]
    return f"python:{major}.{minor}.{micro}-slim-bookworm"


def definition(lock_text: str, where: str = "constraints.txt",
               python: tuple[int, int, int] | None = None) -> str:
    """The Apptainer definition text (build from the project root: %files copies it)."""
    pinned = "\n".join(pins(lock_text, where))
    return f"""\
# Apptainer definition of the fleming-dsl job environment, written by `fleming container`
# (fleming-dsl {__version__}). Every library is pinned to {where}, the versions the goldens and
# figures were made with. Build from the project root (%files copies it into the image):
#   apptainer build fleming.sif fleming.def
# then set `container = "fleming.sif"` in the spec's experiment header or cluster block.
Bootstrap: docker
From: {python_image(python)}

%files
    . /opt/fleming-dsl

%post
    set -eu
    cat > /opt/constraints.txt <<'PINS'
{pinned}
PINS
    python -m pip install --no-cache-dir -c /opt/constraints.txt /opt/fleming-dsl
    rm -rf /opt/fleming-dsl

%environment
    export PYTHONNOUSERSITE=1

%runscript
    exec fleming "$@"

%test
    fleming --version
"""
