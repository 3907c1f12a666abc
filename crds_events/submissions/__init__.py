"""Submissions, from the drop to the decision.

* `manifest`       - ``submission.yaml``: parsing and checking every field
* `dropbox`        - the ingest layout: dropping files + manifest, taking a settled manifest
  (``SubmissionStarted`` / ``SubmissionRejected``), the work and uploads directories
* `processing`     - certify, official names, refactor, newcontext, diffs (no log)
* `official_names`, `results` - the names handed out and the result of a run
* `pipeline`       - one started submission against the log: processing -> outcome events
* `review`         - confirm, force, cancel; what the result page shows
"""
