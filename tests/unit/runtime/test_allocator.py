"""CPU training keeps freed memory on the heap (glibc), and is a no-op without glibc."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys

import pytest

from fleming_dsl.runtime import allocator


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_large_blocks_come_from_the_heap_after_tuning():
    # A 64 MiB block is mmapped by default (above glibc's threshold) and from the heap after:
    # the heap top (sbrk(0)) moves only when the block is served from it. In a child process,
    # so the test's own allocator is left as it was.
    probe = (
        "import ctypes, sys\n"
        "from fleming_dsl.runtime import allocator\n"
        "libc = ctypes.CDLL(None); libc.sbrk.restype = ctypes.c_void_p\n"
        "libc.malloc.restype = ctypes.c_void_p\n"
        "def grows():\n"
        "    before = libc.sbrk(0); block = libc.malloc(64 << 20)\n"
        "    after = libc.sbrk(0); libc.free(ctypes.c_void_p(block)); return after - before >= 64 << 20\n"
        "first = grows()\n"
        "tuned = allocator.keep_freed_memory()\n"
        "print(first, tuned, grows())\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_without_a_c_library_nothing_changes(monkeypatch):
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    assert allocator.keep_freed_memory() is False
