"""Reading what a child process writes without letting it decide how much of the worker's memory that takes.

A child's stderr is kept as a tail of fixed size, read in chunks (a line may never end); its event stream is
read in lines of bounded length, an over-long line dropped piece by piece with a note.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import IO

CHUNK_BYTES = 65536
"""One read from a child's stderr pipe."""


def read_chunk(fd: int) -> bytes:
    """The next bytes on a pipe (empty at its end, or when it was closed under us)."""
    try:
        return os.read(fd, CHUNK_BYTES)
    except OSError:
        return b""


class BoundedTail:
    """The last ``limit`` bytes written to a stream, decoded only when asked for."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.dropped = 0
        self._buf = bytearray()
        self._lock = threading.Lock()

    def add(self, chunk: bytes) -> None:
        with self._lock:
            self._buf += chunk
            excess = len(self._buf) - self.limit
            if excess > 0:
                del self._buf[:excess]
                self.dropped += excess

    def text(self) -> str:
        with self._lock:
            text = self._buf.decode("utf-8", "replace")
            dropped = self.dropped
        return f"[{dropped} earlier bytes not kept]\n{text}" if dropped else text

    def lines(self) -> list[str]:
        return self.text().splitlines()


def bounded_lines(stream: IO[str], limit: int, note: Callable[[str], None]) -> Iterator[str]:
    """The lines of ``stream`` of at most ``limit`` characters; a longer line is read on in ``limit``-sized
    pieces, dropped, and told to ``note``, so no line ever sits whole in memory."""
    while line := stream.readline(limit + 1):
        if len(line) <= limit or line.endswith("\n"):
            yield line
            continue
        dropped = len(line)
        while not line.endswith("\n") and (line := stream.readline(limit)):
            dropped += len(line)
        note(f"[an event line of {dropped} characters was dropped: the limit is {limit}]")
