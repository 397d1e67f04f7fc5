"""The agent-state service's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

AGENTS = Gauge("switchboard_agents", "Agents in each state (refreshed periodically)", ["state"])
TRANSITIONS = Counter(
    "switchboard_agent_transitions_total",
    "Announced agent state changes, by previous and new state",
    ["previous", "state"],
)
LONGEST_IN_STATE = Gauge(
    "switchboard_agent_longest_in_state_seconds",
    "Time the agent longest in each state has been in it (0 when nobody is)",
    ["state"],
)
RONA = Counter("switchboard_agent_rona_total", "Agents sent to RONA (or RONA pending) by routing")
REFUSED = Counter(
    "switchboard_agent_commands_refused_total", "Agent commands refused, by code", ["code"]
)
CONFLICTS = Counter(
    "switchboard_agent_version_conflicts_total",
    "Compare-and-set writes that lost a race and were decided again",
)
TIMERS = Counter("switchboard_agent_timers_fired_total", "Timers fired, by kind", ["timer"])
OUTBOX = Gauge("switchboard_agent_outbox_backlog", "Agents with state events not yet published")
PUBLISH_FAILED = Counter(
    "switchboard_agent_publish_failed_total",
    "State events whose publish failed (kept in the outbox, published later)",
)
RECONCILED = Counter(
    "switchboard_agent_reconciled_total",
    "Reconciliation with routing: runs, failures and stale work dropped",
    ["outcome"],
)
HANDLING = Histogram(
    "switchboard_agent_change_seconds",
    "From a command's arrival to its state event published",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
