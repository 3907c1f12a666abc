"""`python -m crds_events`: the `crds-events` command line."""

from crds_events.cli import main

main()
