"""``python -m switchboard.dialer``: run the campaign dialer."""

from switchboard.dialer.app import main

main()
