"""The job state machine. `check_transition` is the one place that decides what is allowed.

    queued ──▶ scheduled ──▶ running ──▶ succeeded
                  │   ▲          │
                  ▼   │          │
               requeued ◀────────┘
    every state that is not final ──▶ failed | cancelled

`requeued` is a job taken off its devices (migration, a lost node, a drained device) that waits to
be scheduled again; each scheduling is a new attempt with its own placements.
"""

from __future__ import annotations

from hamr.pool.registry.errors import InvalidTransition

QUEUED = "queued"
SCHEDULED = "scheduled"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
REQUEUED = "requeued"

JOB_STATES = (QUEUED, SCHEDULED, RUNNING, SUCCEEDED, FAILED, CANCELLED, REQUEUED)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELLED})
WAITING = frozenset({QUEUED, REQUEUED})  # waiting for devices
ACTIVE = frozenset({SCHEDULED, RUNNING})  # holding devices

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SCHEDULED, CANCELLED, FAILED}),
    SCHEDULED: frozenset({RUNNING, REQUEUED, FAILED, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED, REQUEUED}),
    REQUEUED: frozenset({SCHEDULED, CANCELLED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def check_transition(job_id: int, current: str, new: str) -> None:
    """Raise InvalidTransition unless a job may go from `current` to `new`."""
    if new not in TRANSITIONS:
        raise InvalidTransition(f"job {job_id}: '{new}' is not a job state (states: {', '.join(JOB_STATES)})")
    allowed = TRANSITIONS[current]
    if new not in allowed:
        why = f"{current} is final" if not allowed else f"from {current} it may go to {', '.join(sorted(allowed))}"
        raise InvalidTransition(f"job {job_id}: cannot go from {current} to {new} ({why})")
