"""The ledger's schema, as an ordered list of forward migrations.

``MIGRATIONS[i]`` takes a ledger from version ``i`` to ``i + 1``. Each runs in one transaction
with the version bump, so a crash mid-migration leaves the previous version intact. Amounts are
integers: tokens, and USD in micro-dollars (``*_micros``), so pool arithmetic is exact.
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # v1: the core tables
    """
    CREATE TABLE bottles (
        name        TEXT PRIMARY KEY,
        parent      TEXT REFERENCES bottles(name),
        netns       TEXT,
        veth        TEXT,
        addresses   TEXT NOT NULL DEFAULT '[]',   -- JSON list of CIDRs on the bottle side
        cgroup      TEXT,
        policy      TEXT NOT NULL DEFAULT 'cutoff',
        managed     INTEGER NOT NULL DEFAULT 0,
        labels      TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL,
        removed_at  REAL
    );
    CREATE TABLE budgets (
        scope       TEXT NOT NULL,                -- global | bottle:<name> | agent:<bottle>/<agent>
        provider    TEXT NOT NULL,                -- provider key or '*'
        unit        TEXT NOT NULL CHECK (unit IN ('tokens', 'usd')),
        limit_amount INTEGER NOT NULL CHECK (limit_amount >= 0),  -- tokens or micro-USD
        period      TEXT NOT NULL CHECK (period IN ('total', 'day', 'week', 'month')),
        source      TEXT NOT NULL,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (scope, provider, unit)
    );
    CREATE TABLE pools (
        id          INTEGER PRIMARY KEY,
        scope       TEXT NOT NULL,
        provider    TEXT NOT NULL,
        unit        TEXT NOT NULL,
        period      TEXT NOT NULL,
        period_start REAL NOT NULL,
        used        INTEGER NOT NULL DEFAULT 0,
        reserved    INTEGER NOT NULL DEFAULT 0,
        UNIQUE (scope, provider, unit, period, period_start)
    );
    CREATE TABLE reservations (
        key         TEXT PRIMARY KEY,             -- the idempotency key (flow id)
        bottle      TEXT NOT NULL,
        agent       TEXT NOT NULL,
        provider    TEXT NOT NULL,
        model       TEXT,
        tokens      INTEGER NOT NULL,
        usd_micros  INTEGER NOT NULL,
        pools       TEXT NOT NULL,                -- JSON [[pool_id, amount], ...] held
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL
    );
    CREATE INDEX reservations_expiry ON reservations(expires_at);
    CREATE TABLE usage (
        id          INTEGER PRIMARY KEY,
        key         TEXT NOT NULL UNIQUE,
        ts          REAL NOT NULL,
        bottle      TEXT NOT NULL,
        agent       TEXT NOT NULL,
        provider    TEXT NOT NULL,
        family      TEXT,
        model       TEXT,
        host        TEXT,
        path        TEXT,
        input_tokens        INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        cache_write_tokens  INTEGER NOT NULL,
        cache_read_tokens   INTEGER NOT NULL,
        reasoning_tokens    INTEGER NOT NULL,
        cost_usd    REAL,                          -- NULL: unpriced model
        estimated   INTEGER NOT NULL DEFAULT 0,
        stream      INTEGER NOT NULL DEFAULT 0,
        status      INTEGER,
        latency_ms  REAL
    );
    CREATE INDEX usage_ts ON usage(ts);
    CREATE INDEX usage_bottle_ts ON usage(bottle, ts);
    CREATE TABLE desired_state (
        bottle      TEXT PRIMARY KEY,
        state       TEXT NOT NULL CHECK (state IN ('open', 'cutoff', 'frozen', 'killed')),
        reason      TEXT NOT NULL DEFAULT '',
        actor       TEXT NOT NULL DEFAULT '',
        updated_at  REAL NOT NULL
    );
    CREATE TABLE actions (
        id          INTEGER PRIMARY KEY,
        ts          REAL NOT NULL,
        bottle      TEXT,
        action      TEXT NOT NULL,
        actor       TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        result      TEXT NOT NULL,
        duration_ms REAL,
        detail      TEXT
    );
    CREATE INDEX actions_ts ON actions(ts);
    """,
    # v2: usage cost in micro-USD alongside the float, so pools charge exact integers
    """
    ALTER TABLE usage ADD COLUMN cost_micros INTEGER;
    UPDATE usage SET cost_micros = CAST(ROUND(cost_usd * 1000000) AS INTEGER) WHERE cost_usd IS NOT NULL;
    """,
    # v3: read totals and each bottle's latest calls without scanning usage (the dashboard's start):
    # a covering index grouped by (bottle, provider), and the bottle's rows in commit order
    """
    CREATE INDEX usage_totals ON usage(bottle, provider, input_tokens, output_tokens, cost_micros, ts);
    CREATE INDEX usage_bottle_id ON usage(bottle, id);
    """,
    # v4: a reservation whose lease expires is billed, not released: it keeps its input estimate
    # apart from the output it holds (NULL: reserved before v4), and its usage row is flagged lost
    """
    ALTER TABLE reservations ADD COLUMN input_tokens INTEGER;
    ALTER TABLE usage ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
    """,
    # v5: the output a call's stream had shown when the meter last renewed its lease, billed with
    # the input estimate if the lease expires (the meter died)
    """
    ALTER TABLE reservations ADD COLUMN output_seen INTEGER NOT NULL DEFAULT 0;
    """,
    # v6: egress policies per bottle (absent: the settings' host default), and refusals counted per
    # (UTC day, bottle, host, code): one upsert per refused request, bounded however often it repeats
    """
    CREATE TABLE egress (
        bottle      TEXT PRIMARY KEY,
        policy      TEXT NOT NULL,                -- JSON, the shape of a policy file
        updated_at  REAL NOT NULL
    );
    CREATE TABLE refusals (
        day         REAL NOT NULL,                -- UTC day start
        bottle      TEXT NOT NULL,                -- '' : the source is not a bottle's
        host        TEXT NOT NULL,
        code        TEXT NOT NULL,                -- EGRESS_DENIED | UNMETERED
        count       INTEGER NOT NULL,
        last_ts     REAL NOT NULL,
        last_request TEXT NOT NULL,               -- METHOD /path of the latest (no query)
        PRIMARY KEY (day, bottle, host, code)
    );
    """,
    # v7: the node (host) that metered each call, so a fleet's reports can group per host; a
    # reservation keeps it too, so a lost call is billed to the node that made it. NULL: before v7
    """
    ALTER TABLE usage ADD COLUMN node TEXT;
    ALTER TABLE reservations ADD COLUMN node TEXT;
    """,
    # v8: fleet budgets (bbnet/fleet.py). On a host, a fleet budget's pool is capped by the slices the
    # host holds (slice_limit; NULL: not a fleet pool) and slice_open says the fleet still has room
    # beyond them. On the fleet database, one lease per (node, pool): what the node was granted
    # (counted in the pool's reserved until consumed) and what it has settled as used; a pool whose
    # last grant fell short of the ask (fleet_short) has its nodes give back what no call holds.
    """
    ALTER TABLE pools ADD COLUMN slice_limit INTEGER;
    ALTER TABLE pools ADD COLUMN slice_open INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pools ADD COLUMN fleet_short INTEGER NOT NULL DEFAULT 0;  -- fleet: a grant fell short
    CREATE TABLE fleet_leases (
        node        TEXT NOT NULL,
        pool_id     INTEGER NOT NULL REFERENCES pools(id),
        granted     INTEGER NOT NULL DEFAULT 0,   -- held by the node, net of returns
        consumed    INTEGER NOT NULL DEFAULT 0,   -- settled: moved from the pool's reserved to used
        expires_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        PRIMARY KEY (node, pool_id)
    );
    CREATE INDEX fleet_leases_expiry ON fleet_leases(expires_at);
    """,
    # v9: fleet-wide reports. Each host ships its usage rows to the fleet database's usage table
    # (bbnet/shipping.py); per node (the name its rows carry), the last local usage id shipped, moved
    # in the same transaction as the batch. A shipped row is counted in the fleet's pools through its
    # node's lease, never again by seeding a new pool from usage.
    """
    CREATE TABLE fleet_nodes (
        node         TEXT PRIMARY KEY,
        shipped_upto INTEGER NOT NULL,            -- the host's local usage.id, not the fleet's
        shipped_at   REAL NOT NULL
    );
    """,
    # v10: meter stakes (bbnet/stakes.py). A meter holds a stake in the pools it charges, counted in
    # their reserved, and admits calls from it in memory, each written first to its journal file; a
    # call's hold in the stake moves to used when its usage row is written. A dead meter's stake is
    # settled from its journal: each call left open billed as lost, the rest of the stake freed.
    """
    CREATE TABLE stakes (
        key         TEXT PRIMARY KEY,
        node        TEXT,
        journal     TEXT NOT NULL,                -- the meter's journal file (bbnet/stake_journal.py)
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL
    );
    CREATE TABLE stake_holds (
        stake       TEXT NOT NULL,
        pool_id     INTEGER NOT NULL,
        amount      INTEGER NOT NULL,             -- counted in the pool's reserved
        PRIMARY KEY (stake, pool_id)
    );
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)
