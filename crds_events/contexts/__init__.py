"""Contexts: pointers (latest, edit, ...), contents, remote contexts, bad files, listing, cache import."""
