"""The Switchboard application: the ``switchboard`` command, the supervisor that runs the
services, the local servers it finds or starts, and the AsyncAPI documents (``libs/`` never
runs anything)."""
