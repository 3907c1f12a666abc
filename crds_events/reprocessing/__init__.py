"""Reprocessing: the dataset catalog, affected datasets, their grouping engine and stored results."""
