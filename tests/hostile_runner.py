"""Load each file given on the command line in a forked child, watched, and report.

Run as ``python hostile_runner.py WARMUPS FILE [FILE ...]``. The process first
loads the sound files in WARMUPS (comma-separated) so that the code paths ``load`` takes are
imported and warm; then, for each FILE, a forked child loads them again (a
forked process maps library pages lazily, which would count as its memory), with an address-space
limit resets its peak-memory mark, loads the file with an audit hook
recording every process start, ``exec`` and file opened for writing, and
reports one JSON line: the outcome (the exception's type and message, or
"loaded"), the audited events, and the peak resident memory above the
child's start.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import time

import torch

torch.set_num_threads(1)  # forked children must not inherit a thread pool

import skggda.io  # noqa: E402

#: Audit events that start processes or run programs.
PROCESS_EVENTS = ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
                  "os.fork", "os.forkpty", "pty.spawn", "ctypes.dlopen", "socket.connect")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_EVENTS = []
_WATCHING = False


def _audit(event, args):
    if not _WATCHING:
        return
    if event in PROCESS_EVENTS:
        _EVENTS.append(f"{event} {str(args)[:100]}")
    elif event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or \
            (isinstance(flags, int) and flags & _WRITE_FLAGS)
        if writes:
            _EVENTS.append(f"open for writing {path!r}")


def _status(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak():
    with open("/proc/self/clear_refs", "w") as refs:  # Linux: "5" resets VmHWM
        refs.write("5")


def _watched_load(path):
    """Load ``path`` with the audit hook on; the outcome, the events and the peak memory."""
    global _WATCHING
    gc.collect()
    _reset_peak()
    start = _status("VmRSS")
    _EVENTS.clear()
    _WATCHING = True
    began = time.perf_counter()
    try:
        skggda.io.load(path)
        outcome = {"error": None, "message": "loaded"}
    except BaseException as exc:  # noqa: BLE001 - reporting any escape is the point
        outcome = {"error": type(exc).__name__, "message": str(exc)[:400],
                   "unsafe_file_error": isinstance(exc, skggda.io.UnsafeFileError)}
    _WATCHING = False
    outcome.update(seconds=time.perf_counter() - began, events=list(_EVENTS), peak=_status("VmHWM") - start,
                   size=os.path.getsize(path), path=path)
    return outcome


def main(warmups, paths):
    for warmup in warmups.split(","):
        skggda.io.load(warmup)
    limit = _status("VmSize") + (2 << 30)  # no hostile file may take the machine down
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.addaudithook(_audit)
    for path in paths:
        print(json.dumps(_watched_load(path)), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
