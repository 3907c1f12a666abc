"""Accounts: users, roles, passwords, API tokens and instrument locks."""
