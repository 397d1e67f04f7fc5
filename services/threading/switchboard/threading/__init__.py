"""Threading: cases, case numbers, thread identifiers, follow-ups, dispositions, agent actions."""
