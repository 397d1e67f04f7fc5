"""Routing: queues/services, offers as reservations, RONA, team and personal queues, transfers."""
