"""Periodic jobs: declared in one table per service, started and stopped by the runtime.

Each run is measured: ``switchboard_job_last_run_timestamp_seconds`` (when it last finished)
and ``switchboard_job_duration_seconds`` (how long that run took), by ``task`` (the job's name;
Prometheus adds the process's own ``job`` and ``instance``), so a job that stopped running or
runs slower than its interval shows on a dashboard.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Gauge

Job = Callable[[], Awaitable[None]]

LAST_RUN = Gauge(
    "switchboard_job_last_run_timestamp_seconds",
    "When each periodic job last finished a run (Unix time)",
    ["task", "outcome"],
)
DURATION = Gauge(
    "switchboard_job_duration_seconds",
    "How long the last run of each periodic job took",
    ["task"],
)


@dataclass(frozen=True)
class PeriodicJob:
    """``run`` every ``seconds`` while the service is up (a failed run is logged, not fatal)."""

    name: str
    seconds: float
    run: Job
