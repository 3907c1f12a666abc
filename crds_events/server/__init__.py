"""The composition root of a running server: parts, scheduler, WSGI server, logging."""
