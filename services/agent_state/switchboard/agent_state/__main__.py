from switchboard.agent_state.app import main

main()
