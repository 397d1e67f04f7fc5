from switchboard.reporting.app import main

main()
