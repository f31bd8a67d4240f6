"""Testing utilities shared by the test suite and the benchmarks (private).

Memory: :class:`PeakMemory` samples the process's resident anonymous memory
(heap and tensors, not the file pages of a memmap) while a ``with`` block
runs, which is what streaming must keep bounded. Standard library only.
"""

from __future__ import annotations

import threading


def proc_bytes(path, field):
    """The ``field: N kB`` line of a Linux ``/proc`` file, in bytes (``None`` elsewhere)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def anonymous_rss():
    """Resident anonymous memory of this process in bytes (Linux; ``nan`` elsewhere).

    Heap and tensors, not the page cache a memmap maps in: what streaming
    must keep bounded.
    """
    value = proc_bytes("/proc/self/status", "RssAnon")
    return float("nan") if value is None else value


class PeakMemory:
    """Peak growth of :func:`anonymous_rss` over a ``with`` block (sampled every 5 ms).

    Attributes
    ----------
    start : float
        :func:`anonymous_rss` at entry, in bytes.
    peak : float
        The largest value sampled, at entry, every 5 ms and at exit, in bytes.
    growth : float
        Peak minus the value at entry, in bytes (set at exit; ``nan`` where
        :func:`anonymous_rss` is).
    """

    def __enter__(self):
        self.start = self.peak = anonymous_rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, anonymous_rss())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, anonymous_rss())
        self.growth = self.peak - self.start
        return False
