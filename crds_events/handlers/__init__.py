"""Reactions to events: the submission pipeline, delivery, e-mail, reprocessing, ...

Each module holds handlers (`crds_events.store.handler.Handler`: which events they eat and
what they append, inside the runner's write transaction) and the worker threads that do the
slow part outside it. `crds_events.handlers.runner.HandlerRunner` feeds the handlers the
events after their checkpoints.
"""
