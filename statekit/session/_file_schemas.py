"""The SQLite schemas statekit writes session files in: the same tables, columns, indexes and
trigger as Pyrogram 2.0 (schema 3), kurigram / irenogram (schema 7) and Telethon (schema 8)
create, so that each library opens the file as one of its own."""

from __future__ import annotations

__all__ = ["KURIGRAM_7", "PYROGRAM_3", "TELETHON_8"]

_NOW = "CAST(STRFTIME('%s', 'now') AS INTEGER)"
_PEERS_TRIGGER = f"""
CREATE TRIGGER trg_peers_last_update_on AFTER UPDATE ON peers
BEGIN
    UPDATE peers SET last_update_on = {_NOW} WHERE id = NEW.id;
END;
"""
PYROGRAM_3 = f"""
CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, api_id INTEGER, test_mode INTEGER,
    auth_key BLOB, date INTEGER NOT NULL, user_id INTEGER, is_bot INTEGER);
CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL,
    username TEXT, phone_number TEXT, last_update_on INTEGER NOT NULL DEFAULT ({_NOW}));
CREATE TABLE version (number INTEGER PRIMARY KEY);
CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_username ON peers (username);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);
{_PEERS_TRIGGER}
"""
KURIGRAM_7 = f"""
CREATE TABLE sessions (dc_id INTEGER PRIMARY KEY, server_address TEXT, port INTEGER,
    api_id INTEGER, test_mode INTEGER, auth_key BLOB, date INTEGER NOT NULL, user_id INTEGER,
    is_bot INTEGER);
CREATE TABLE peers (id INTEGER PRIMARY KEY, access_hash INTEGER, type INTEGER NOT NULL,
    phone_number TEXT, last_update_on INTEGER NOT NULL DEFAULT ({_NOW}));
CREATE TABLE usernames (id INTEGER, username TEXT, FOREIGN KEY (id) REFERENCES peers(id));
CREATE TABLE update_state (id INTEGER PRIMARY KEY, pts INTEGER, qts INTEGER, date INTEGER,
    seq INTEGER);
CREATE TABLE version (number INTEGER PRIMARY KEY);
CREATE INDEX idx_peers_id ON peers (id);
CREATE INDEX idx_peers_phone_number ON peers (phone_number);
CREATE INDEX idx_usernames_id ON usernames (id);
CREATE INDEX idx_usernames_username ON usernames (username);
{_PEERS_TRIGGER}
"""
TELETHON_8 = """
CREATE TABLE version (version integer primary key);
CREATE TABLE sessions (dc_id integer primary key, server_address text, port integer,
    auth_key blob, takeout_id integer, tmp_auth_key blob);
CREATE TABLE entities (id integer primary key, hash integer not null, username text,
    phone integer, name text, date integer);
CREATE TABLE sent_files (md5_digest blob, file_size integer, type integer, id integer,
    hash integer, primary key(md5_digest, file_size, type));
CREATE TABLE update_state (id integer primary key, pts integer, qts integer, date integer,
    seq integer);
"""
