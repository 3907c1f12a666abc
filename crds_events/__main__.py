from crds_events.cli import main

main()
