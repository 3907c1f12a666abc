"""Changing rules: refactor (insert/delete references in an rmap, `editable_rmap`),
newcontext, and `crds diff` (printing logical differences, text differences).
"""
