"""Consumer queues, one module per consuming service (``queues.threading`` and so on)."""
