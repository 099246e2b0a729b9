"""Defaults that several planes share, in one place (settings, netrules, the enforcer, the meter).

Kept free of imports so the pure rule renderer can use them without pulling in the settings stack.
"""

from __future__ import annotations

DEFAULT_ADDRESS_POOL = "10.243.0.0/16"  # where bottles' /30 links are leased from
DEFAULT_PROXY_PORT = 8080  # the meter's port on every bottle's host address
DEFAULT_DB = "/var/lib/bbnet/ledger.db"  # the ledger file unless --db, BBNET_DB or settings' ledger.url
