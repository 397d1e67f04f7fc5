"""Agent-state: the state machine every agent lives in."""
