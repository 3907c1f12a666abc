"""Delivery to the archive: .cat publishing and archive reconciliation."""
