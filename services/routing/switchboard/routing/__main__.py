from switchboard.routing.app import main

main()
