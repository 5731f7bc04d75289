"""The SQL of ``PostgresStorage``: schema steps, the statements of one table, and the glob
pre-filter. ``$1`` of every statement is "now" in Unix milliseconds (NULL: the server's clock)."""

from __future__ import annotations

import re
from typing import Final

__all__ = ["SCHEMA_VERSION", "Statements", "check_table", "like_filter", "meta_sql", "migrations",
           "prefix_bounds", "quote", "schema_sql"]

_NOW = "COALESCE($1::bigint, (extract(epoch FROM statement_timestamp()) * 1000)::bigint)"
_LIVE = f"(t.expires_at IS NULL OR t.expires_at > {_NOW})"
_EXPIRED = f"(t.expires_at IS NOT NULL AND t.expires_at <= {_NOW})"
_TABLE_NAME = re.compile(r"^(?:[a-z_][a-z0-9_]{0,47}\.)?[a-z_][a-z0-9_]{0,47}$")


def quote(table: str) -> str:
    """``table`` (already checked by ``check_table``) as a quoted SQL identifier."""
    return ".".join(f'"{part}"' for part in table.split("."))


def migrations(table: str) -> tuple[tuple[str, ...], ...]:
    """The schema steps; step ``n`` takes a version-``n`` schema to version ``n + 1``."""
    kv = quote(table)
    index = quote(table.split(".")[-1] + "_expires")
    return (
        (
            f"""CREATE TABLE IF NOT EXISTS {kv} (
    namespace  bytea  NOT NULL,
    key        bytea  NOT NULL,
    value      bytea,
    counter    bigint,
    expires_at bigint,
    PRIMARY KEY (namespace, key),
    CHECK ((value IS NULL) <> (counter IS NULL))
)""",
            f"CREATE INDEX IF NOT EXISTS {index} ON {kv} (expires_at) WHERE expires_at IS NOT NULL",
        ),
    )


SCHEMA_VERSION: Final = len(migrations("statekit_kv"))


def meta_sql(table: str) -> tuple[str, str]:
    meta = quote(table + "_meta")
    create = f"CREATE TABLE IF NOT EXISTS {meta} (name text PRIMARY KEY, value text NOT NULL)"
    upsert = (
        f"INSERT INTO {meta} (name, value) VALUES ('schema_version', $1) "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value"
    )
    return create, upsert


def schema_sql(table: str = "statekit_kv", role: str = "statekit_app") -> str:
    """The SQL that creates statekit's schema (current version) for ``table``, plus the grants a
    role without CREATE rights needs, for a DBA to run by hand. Raises ``ValueError`` for a table
    name that is not a plain (optionally schema-qualified) lower-case identifier."""
    check_table(table)
    lines = [step + ";" for steps in migrations(table) for step in steps]
    create, _ = meta_sql(table)
    meta = quote(table + "_meta")
    lines += [
        create + ";",
        f"INSERT INTO {meta} (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}') "
        "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value;",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON {quote(table)} TO {role};",
        f"GRANT SELECT ON {meta} TO {role};",
    ]
    return "\n".join(lines)


def check_table(table: object) -> str:
    if type(table) is not str or not _TABLE_NAME.match(table):
        raise ValueError(
            f"table must be a lower-case SQL identifier of at most 48 characters, optionally "
            f"schema-qualified (e.g. 'statekit_kv' or 'bots.statekit_kv'), got {table!r}"
        )
    return table


def prefix_bounds(prefix: bytes) -> tuple[bytes, bytes | None]:
    """(lowest, first-beyond) byte strings of every key starting with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return prefix, None
    return prefix, stripped[:-1] + bytes([stripped[-1] + 1])


def like_filter(pattern: str) -> bytes | None:
    """A LIKE pattern (on UTF-8 bytes, ``\\`` escapes) every key matching the Redis glob
    ``pattern`` matches; ``None`` when it would match everything. The glob itself is applied
    afterwards, exactly; this only lets the server skip rows."""
    pat = pattern.encode()
    out = bytearray()
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == 0x2A:  # *
            if not out.endswith(b"%") or out.endswith(b"\\%"):
                out += b"%"
            i += 1
        elif c == 0x3F:  # ?  one byte
            out += b"_"
            i += 1
        elif c == 0x5C:  # backslash: the next byte literally (a trailing one is itself)
            lit = pat[i + 1] if i + 1 < n else c
            out += (b"\\" + bytes([lit])) if lit in b"%_\\" else bytes([lit])
            i += 2
        elif c == 0x5B:  # a class matches one byte; its details are left to the exact glob
            i += 1
            if i < n and pat[i] == 0x5E:
                i += 1
            while i < n and pat[i] != 0x5D:
                i += 2 if pat[i] == 0x5C and i + 1 < n else 1
            i += 1
            out += b"_"
        else:
            out += (b"\\" + bytes([c])) if c in b"%_" else bytes([c])
            i += 1
    if out == b"%":
        return None
    return bytes(out)



class Statements:
    """Every statement of the storage for one table. Parameters: ``$1`` now in Unix ms (NULL:
    the server's clock), ``$2`` namespace, ``$3`` key, then per statement."""

    def __init__(self, table: str) -> None:
        t = f"{table} AS t"
        where = "t.namespace = $2 AND t.key = $3"
        expires = f"{_NOW} + $6::bigint"
        self.get = f"SELECT t.value, t.counter FROM {t} WHERE {where} AND {_LIVE}"
        upsert = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"VALUES ($2, $3, $4, $5, {expires}) ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = EXCLUDED.value, counter = EXCLUDED.counter, "
        )
        self.set = upsert + "expires_at = EXCLUDED.expires_at"
        self.set_keep = upsert + f"expires_at = CASE WHEN {_LIVE} THEN t.expires_at ELSE EXCLUDED.expires_at END"
        self.delete = f"DELETE FROM {t} WHERE {where} RETURNING {_LIVE}"
        self.absent = f"SELECT NOT EXISTS (SELECT 1 FROM {t} WHERE {where} AND {_LIVE})"
        self.insert_if_absent = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"VALUES ($2, $3, $4, $5, {expires}) ON CONFLICT (namespace, key) DO UPDATE SET "
            "value = EXCLUDED.value, counter = EXCLUDED.counter, expires_at = EXCLUDED.expires_at "
            f"WHERE {_EXPIRED} RETURNING true"
        )
        same = "t.value IS NOT DISTINCT FROM $7 AND t.counter IS NOT DISTINCT FROM $8"
        self.delete_if = (
            f"DELETE FROM {t} WHERE {where} AND {_LIVE} "
            "AND t.value IS NOT DISTINCT FROM $4 AND t.counter IS NOT DISTINCT FROM $5 RETURNING true"
        )
        update = f"UPDATE {t} SET value = $4, counter = $5, "
        self.update_if = (
            update + f"expires_at = {expires} WHERE {where} AND {_LIVE} AND {same} RETURNING true"
        )
        self.update_if_keep = (
            update + "expires_at = t.expires_at "
            f"WHERE {where} AND {_LIVE} AND t.value IS NOT DISTINCT FROM $6 "
            "AND t.counter IS NOT DISTINCT FROM $7 RETURNING true"
        )
        # a live non-integer row is left as it was and returns NULL: WrongTypeError
        self.increment = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"VALUES ($2, $3, NULL, $4, {_NOW} + $5::bigint) ON CONFLICT (namespace, key) DO UPDATE SET "
            f"counter = CASE WHEN {_EXPIRED} THEN EXCLUDED.counter ELSE t.counter + EXCLUDED.counter END, "
            f"value = CASE WHEN {_EXPIRED} THEN NULL ELSE t.value END, "
            f"expires_at = CASE WHEN {_EXPIRED} THEN EXCLUDED.expires_at ELSE t.expires_at END "
            "RETURNING t.counter"
        )
        self.ttl = f"SELECT t.expires_at - {_NOW} FROM {t} WHERE {where} AND {_LIVE}"
        self.expire = (
            f"UPDATE {t} SET expires_at = {_NOW} + $4::bigint WHERE {where} AND {_LIVE} RETURNING true"
        )
        self.get_many = (
            f"SELECT t.key, t.value, t.counter FROM {t} "
            f"WHERE t.namespace = $2 AND t.key = ANY($3::bytea[]) AND {_LIVE}"
        )
        self.set_many = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"SELECT $2, u.k, u.v, u.c, {_NOW} + $6::bigint "
            "FROM unnest($3::bytea[], $4::bytea[], $5::bigint[]) AS u(k, v, c) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
            "counter = EXCLUDED.counter, expires_at = EXCLUDED.expires_at"
        )
        self.set_batch = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"SELECT $2, u.k, u.v, u.c, {_NOW} + u.ttl "
            "FROM unnest($3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[]) AS u(k, v, c, ttl) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
            "counter = EXCLUDED.counter, expires_at = EXCLUDED.expires_at"
        )
        self.insert_if_absent_batch = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"SELECT $2, u.k, u.v, u.c, {_NOW} + u.ttl "
            "FROM unnest($3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[]) AS u(k, v, c, ttl) "
            "ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value, "
            "counter = EXCLUDED.counter, expires_at = EXCLUDED.expires_at "
            f"WHERE {_EXPIRED} RETURNING t.key"
        )
        self.update_if_batch = (
            f"UPDATE {t} SET value = u.v, counter = u.c, expires_at = {_NOW} + u.ttl "
            "FROM unnest($3::bytea[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bytea[], "
            "$8::bigint[]) AS u(k, v, c, ttl, ov, oc) "
            f"WHERE t.namespace = $2 AND t.key = u.k AND {_LIVE} "
            "AND t.value IS NOT DISTINCT FROM u.ov AND t.counter IS NOT DISTINCT FROM u.oc "
            "RETURNING t.key"
        )
        self.increment_batch = (
            f"INSERT INTO {t} (namespace, key, value, counter, expires_at) "
            f"SELECT $2, u.k, NULL, u.a, {_NOW} + u.ttl "
            "FROM unnest($3::bytea[], $4::bigint[], $5::bigint[]) AS u(k, a, ttl) "
            "ON CONFLICT (namespace, key) DO UPDATE SET "
            f"counter = CASE WHEN {_EXPIRED} THEN EXCLUDED.counter ELSE t.counter + EXCLUDED.counter END, "
            f"value = CASE WHEN {_EXPIRED} THEN NULL ELSE t.value END, "
            f"expires_at = CASE WHEN {_EXPIRED} THEN EXCLUDED.expires_at ELSE t.expires_at END "
            "RETURNING t.key, t.counter"
        )
        self.delete_batch = (
            f"DELETE FROM {t} WHERE t.namespace = $2 AND t.key = ANY($3::bytea[]) "
            f"RETURNING t.key, {_LIVE}"
        )
        self.delete_many = (
            f"WITH gone AS (DELETE FROM {t} WHERE t.namespace = $2 AND t.key = ANY($3::bytea[]) "
            f"RETURNING {_LIVE} AS live) SELECT count(*) FILTER (WHERE live) FROM gone"
        )
        self.scan = (
            f"SELECT t.key FROM {t} WHERE t.namespace = $2 AND t.key >= $3 "
            "AND ($4::bytea IS NULL OR t.key < $4) AND ($5::bytea IS NULL OR t.key > $5) "
            f"AND ($6::bytea IS NULL OR t.key LIKE $6) AND {_LIVE} ORDER BY t.key LIMIT $7"
        )
        self.clear = (
            f"WITH gone AS (DELETE FROM {t} WHERE t.namespace = $2 RETURNING {_LIVE} AS live) "
            "SELECT count(*) FILTER (WHERE live) FROM gone"
        )
        self.sweep = (
            f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT s.ctid FROM {table} AS s "
            f"WHERE s.expires_at <= {_NOW} LIMIT $2 FOR UPDATE SKIP LOCKED)) "
            f"AND expires_at <= {_NOW}"
        )
