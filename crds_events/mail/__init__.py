"""E-mail: what an event's e-mail says (`compose`, pure), the outbox that sends queued
e-mail and records the outcome (`outbox`; its fold is `crds_events.store.folds.EMAILS`),
and the SMTP and maildir transports (`transports`)."""
