"""Durable outgoing messages.

``queue`` (no Telegram here) writes messages in the caller's transaction; ``sender`` delivers
them through a ``Transport`` (``telegram`` is the first one) within the messenger's rate limits.
"""

from bot.outbox.queue import Button, OutgoingMessage, Recipient, enqueue, enqueue_many

__all__ = ["Button", "OutgoingMessage", "Recipient", "enqueue", "enqueue_many"]
