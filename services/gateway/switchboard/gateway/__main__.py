from switchboard.gateway.app import main

main()
