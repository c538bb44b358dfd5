"""Durable sequence numbers: a 16-byte counter file, rewritten in place for every message.

Every number is written before its message is sent, so a restarted publisher continues at the
next number: no repeat, and no skip unless the process died between the write and the send.
The record is ``seq`` and its bitwise complement (little-endian u64 each), written with one
``pwrite`` at offset 0: a process killed at any point leaves either the old or the new record, and
a damaged file is detected rather than silently restarting at 1. The file is locked (``flock``)
so two publishers cannot share one counter; the lock dies with the process.

With ``fsync=False`` (default) a write survives the process being killed but not an operating-system
crash or power loss. ``fsync=True`` survives those too, at the cost of one ``fsync`` per message
(measured ~1 µs per write without, ~3 ms with, on this machine), which then dominates latency.
An SQLite WAL store was tried first: ~8 µs per commit plus ~10 ms checkpoint stalls every 1000
commits on the publishing thread.
"""

import fcntl
import os
import struct
from pathlib import Path

from lbml.signals.schema import SignalsError

_RECORD = struct.Struct("<QQ")
_MASK = (1 << 64) - 1


class SequenceStore:
    """Hand out consecutive sequence numbers, starting after the last one ever written."""

    def __init__(self, path: Path, *, fsync: bool = False) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._fsync = fsync
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SignalsError(f"{path}: sequence file is in use by another publisher") from None
            data = os.pread(self._fd, _RECORD.size + 1, 0)
            if not data:
                self._last = 0
            else:
                seq, check = _RECORD.unpack(data) if len(data) == _RECORD.size else (0, 0)
                if len(data) != _RECORD.size or check != seq ^ _MASK:
                    raise SignalsError(f"{path}: damaged sequence file (not a 16-byte seq record)")
                self._last = seq
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def last(self) -> int:
        """The last number handed out (0 if none ever was)."""
        return self._last

    def next(self) -> int:
        """Persist and return the next sequence number."""
        self.advance_to(self._last + 1)
        return self._last

    def advance_to(self, seq: int) -> None:
        """Persist ``seq`` as the last number if it is beyond it (a number given by the caller:
        a re-publication after a restart reuses its earlier number and leaves the record as is)."""
        if seq <= self._last:
            return
        os.pwrite(self._fd, _RECORD.pack(seq, seq ^ _MASK), 0)
        if self._fsync:
            os.fsync(self._fd)
        self._last = seq

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
