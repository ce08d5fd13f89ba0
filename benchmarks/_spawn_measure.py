"""Run a command N times and report wall time and peak RSS of each run (JSON lines).

Run with ``python -S -E``: this helper must stay small, because Linux counts
the RSS a child had before ``exec`` (a copy of its parent) in the child's
``ru_maxrss``; spawned from a lean parent, the peak is the command's own.
Usage: ``python -S -E _spawn_measure.py N -- cmd args...``; env is inherited.
"""

import json
import os
import sys
import time


def main() -> int:
    n = int(sys.argv[1])
    cmd = sys.argv[sys.argv.index("--") + 1 :]
    for _ in range(n):
        t0 = time.perf_counter()
        pid = os.posix_spawn(cmd[0], cmd, os.environ)
        _, status, usage = os.wait4(pid, 0)
        elapsed = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        print(
            json.dumps({"s": elapsed, "rss_mib": usage.ru_maxrss / 1024.0, "rc": code}), flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
