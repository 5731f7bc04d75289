"""``open_storage(url)``: schemes, options and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from statekit import MemoryStorage, RedisStorage, SQLiteStorage, open_storage


def test_memory_url_with_options() -> None:
    storage = open_storage("memory://?namespace=bot&default_ttl=30")
    assert isinstance(storage, MemoryStorage)
    assert storage.namespace == "bot" and storage.default_ttl == 30


def test_sqlite_urls(tmp_path: Path) -> None:
    relative = open_storage("sqlite:///state.db")
    assert isinstance(relative, SQLiteStorage) and relative.path == "state.db"
    absolute = open_storage(f"sqlite:///{tmp_path}/x.db")
    assert isinstance(absolute, SQLiteStorage) and absolute.path == f"{tmp_path}/x.db"
    memory = open_storage("sqlite://:memory:?namespace=n")
    assert isinstance(memory, SQLiteStorage) and memory.path == ":memory:" and memory.namespace == "n"
    full = open_storage("sqlite:///state.db?durability=full")
    assert isinstance(full, SQLiteStorage) and full.durability == "full"


def test_redis_urls_hide_the_password() -> None:
    storage = open_storage("redis://user:hunter2@127.0.0.1:6380/3?namespace=bot")
    assert isinstance(storage, RedisStorage)
    assert "hunter2" not in repr(storage)
    assert "127.0.0.1:6380" in repr(storage)
    assert isinstance(open_storage("rediss://127.0.0.1:6380/0"), RedisStorage)


@pytest.mark.parametrize(
    "url",
    ["ftp://x", "nonsense", "", "sqlite://relative.db", "redis://:pw@/0", "memory://?unknown=1",
     "memory://?default_ttl=soon", "memory://?namespace=", "redis://127.0.0.1:notaport/0"],
)
def test_bad_urls_name_the_accepted_schemes(url: str) -> None:
    with pytest.raises(ValueError, match="accepted schemes") as info:
        open_storage(url)
    assert "pw" not in str(info.value).replace("accepted", "")


def test_password_never_in_error() -> None:
    with pytest.raises(ValueError) as info:
        open_storage("redis://admin:topsecret@127.0.0.1:xx/0")
    assert "topsecret" not in str(info.value)
