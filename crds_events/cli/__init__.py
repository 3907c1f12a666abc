"""The `crds-events` command line: a thin click layer over library functions.

Every command turns its options into a library call and prints the result. Errors that a
user can act on are raised as `click.ClickException` (one clear line, non-zero exit); any
other exception is reported in one line too, with the traceback only under `--debug`.

* `group`        - the click group, `main`, error handling, the list of commands
* `options`      - options shared by several commands (--root, --user, --json, --server ...)
* `log`          - init, serve, events, rebuild, backup, restore
* `migrate`      - migrate-store (the log from SQLite to PostgreSQL)
* `rules`        - bestrefs, checksum, certify, refactor, newcontext, diff, uniqname, list
* `submissions`  - import-cache, submit, submission, mail
* `accounts`     - user, lock
* `lifecycle`    - deliveries, delivery, set-context, contexts, mark-bad, mark-ok,
                   bad-files, remote-context
* `reprocessing` - datasets, repro
* `pipelines`    - sync, pipeline (add, rotate, revoke, list)
* `demo`         - generate, demo
"""

from crds_events.cli.group import cli, main

__all__ = ["cli", "main"]
