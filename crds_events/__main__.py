"""`python -m crds_events`: the `crds-events` command line."""

from crds_events.cli import main

# Guarded: multiprocessing's fork server (certify children) imports the main module again.
if __name__ == "__main__":
    main()
