"""Reporting: the supervisors' read model, folded from the events the services publish."""
