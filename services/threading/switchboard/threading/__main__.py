from switchboard.threading.app import main

main()
