"""SQL workers outlive the threads that ask for them.

A worker dies with the thread that started it (PR_SET_PDEATHSIG is per thread), and the collector's
and the web UI's requests run on a server's thread pool, whose idle threads exit. The pool starts
workers from one long-lived thread of its own, and replaces a worker that died while idle.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tracekit.collector._sql import SqlLimits
from tracekit.collector._sqlpool import SqlService


def test_sql_workers_outlive_the_thread_that_asked_for_them(tmp_path: Path) -> None:
    service = SqlService(tmp_path, SqlLimits(workers=2))
    try:
        answers: list[int] = []

        def ask() -> None:  # two at once: the second needs a new worker, started on this short-lived thread's behalf
            barrier.wait()
            answers.append(service.run_trusted("SELECT 1 AS x, sleep_ms(200)", []).num_rows)

        barrier = threading.Barrier(2)
        threads = [threading.Thread(target=ask) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert answers == [1, 1] and service.workers_started == 2
        for _ in range(4):  # both workers serve again after the threads that started them are gone
            assert service.run_trusted("SELECT 2 AS x", []).num_rows == 1
        assert service.workers_started == 2
    finally:
        service.close()


def test_a_worker_that_died_while_idle_is_replaced(tmp_path: Path) -> None:
    service = SqlService(tmp_path, SqlLimits(workers=1))
    try:
        idle = service._idle[0]
        idle.proc.kill()
        idle.proc.wait()
        assert service.run_trusted("SELECT 1 AS x", []).num_rows == 1
        assert service.workers_started == 2
    finally:
        service.close()
