"""The one error reports raise for anything the user can fix: bad options, a missing ledger."""

from __future__ import annotations


class ReportError(Exception):
    """A one-line message fit for a user (the CLI prints it and exits 2)."""
