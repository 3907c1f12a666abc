"""Submissions: manifests, processing, review (issue 5)."""
