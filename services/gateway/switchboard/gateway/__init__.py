"""The gateway: the thin edge that lets agents and supervisors act on Switchboard."""
