"""WAL checkpoints of a SQLite ledger on a thread of their own, off the connection that must commit fast.

SQLite runs a checkpoint inside whichever COMMIT pushes the WAL past ``wal_autocheckpoint`` pages
(1000): that COMMIT copies the WAL back into the database file and fsyncs both, a few to tens of
milliseconds here instead of ~0.06 ms (bench/hook_bench.py's commit p99). On the meter that COMMIT
is on the event loop, in front of every flow. So the meter's connection turns its autocheckpoint
off, and a :class:`Checkpointer` thread with its own connection runs a PASSIVE checkpoint every
``every`` seconds: it never takes the write lock nor waits for a reader, and the sqlite3 module
releases the GIL while it runs. A crash loses nothing: a checkpoint only copies committed frames,
and what is still in the WAL is read from there (by every connection) until the next one.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

log = logging.getLogger("bbnet.ledger")

CHECKPOINT_EVERY_S = 0.5  # the WAL then holds well under a second of writes (a few MB at most)
_BUSY_TIMEOUT_S = 10.0


class Checkpointer:
    """A thread that checkpoints the WAL of the SQLite ledger at ``path`` until :meth:`stop`."""

    def __init__(self, path: Path, every: float = CHECKPOINT_EVERY_S) -> None:
        self.path = path
        self.every = every
        self.checkpoints = 0  # how many have run (the tests and the bench read it)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bbnet-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        try:
            while not self._stop.wait(self.every):
                self._checkpoint(conn)
            self._checkpoint(conn)  # what the last interval wrote
        finally:
            conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as e:  # the next interval tries again; the WAL keeps every frame meanwhile
            log.warning("WAL checkpoint of %s failed: %s", self.path, e)
            return
        self.checkpoints += 1

    def stop(self) -> None:
        """Run a last checkpoint and end the thread."""
        self._stop.set()
        self._thread.join(timeout=_BUSY_TIMEOUT_S + 5)
