"""pytest plugin (``-p _pytest_failures``, ``bench/`` on the path): each failure's report appended to
``$SELFONN_FAILURE_LOG`` as it happens.

pytest prints tracebacks only at the end of a session; a GPU round's tests section may be cut by its
deadline (or a worker hang at exit) before then, and a failure without its traceback costs a whole
device call to reproduce. Under pytest-xdist only the controller writes.
"""

from __future__ import annotations

import os


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get("SELFONN_FAILURE_LOG")
    if not path or not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"==== {report.nodeid} ({report.when})\n{report.longreprtext}\n\n")
