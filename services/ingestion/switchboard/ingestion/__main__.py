"""``python -m switchboard.ingestion``"""

from switchboard.ingestion.app import main

main()
