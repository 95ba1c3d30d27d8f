"""The one exception type whose message is meant for the person at the keyboard."""

from __future__ import annotations


class AdvisorError(Exception):
    """Bad input or a missing resource: the CLI prints the message as one line and exits 2."""
