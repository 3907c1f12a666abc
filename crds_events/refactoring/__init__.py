"""Changing rules: refactor (insert/delete references), newcontext, diffs."""
