"""E-mail: composing, the outbox and its fold, transports."""
