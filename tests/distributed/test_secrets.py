"""Redis passwords never appear in a repr, a str, an error (with its whole chain) or a log record,
against a real password-protected redis-server."""

from __future__ import annotations

import logging
import os
import traceback
from collections.abc import Iterator

import pytest
import redis.asyncio

from statekit import RedisStorage, StorageUnavailableError, open_storage
from statekit.testing import RedisServer, RedisServerUnavailable

PASSWORD = "Tr0ub4dor-secret-9f3"


@pytest.fixture
def protected() -> Iterator[RedisServer]:
    try:
        server = RedisServer(password=PASSWORD)
        server.start()
    except RedisServerUnavailable as exc:
        if os.environ.get("STATEKIT_REQUIRE_REDIS") == "1":
            pytest.fail(f"STATEKIT_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(str(exc))
    yield server
    server.cleanup()


def _no_secret(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text


def _error_text(exc: BaseException) -> str:
    """Everything a traceback of ``exc`` would print, causes included."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _logs_clean(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        _no_secret(record.getMessage(), str(record.args), record.exc_text or "")
    _no_secret(caplog.text)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:6390/0",
        f"redis://app:{PASSWORD}@127.0.0.1:6390/0?namespace=x",
        f"rediss://:{PASSWORD}@127.0.0.1:6390/0",
        f"redis+cluster://:{PASSWORD}@127.0.0.1:7000,127.0.0.1:7001",
        f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379/mymaster",
        f"redis+sentinel://127.0.0.1:26379/mymaster?sentinel_password={PASSWORD}",
    ],
)
def test_repr_and_str_hide_the_password(url: str) -> None:
    storage = open_storage(url)
    _no_secret(repr(storage), str(storage))
    assert "127.0.0.1" in repr(storage)


@pytest.mark.parametrize(
    "url",
    [
        f"redis://:{PASSWORD}@127.0.0.1:notaport/0",
        f"redis+cluster://:{PASSWORD}@127.0.0.1:70000",
        f"redis+cluster://u:{PASSWORD}@with@127.0.0.1:70000",
        f"redis+sentinel://:{PASSWORD}@127.0.0.1:26379",
        f"redis+sentinel://127.0.0.1:26379/m?sentinel_password={PASSWORD}&bogus=1",
    ],
)
def test_bad_url_errors_hide_the_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        open_storage(url)
    _no_secret(_error_text(info.value))
    assert "with@" not in str(info.value)


async def test_working_storage_never_shows_the_password(protected: RedisServer, all_logs: pytest.LogCaptureFixture) -> None:
    storage = open_storage(protected.url + "?namespace=secrets")
    async with storage:
        await storage.set_state("k", {"v": 1})
        assert await storage.get_state("k") == {"v": 1}
        _no_secret(repr(storage), str(storage), repr(storage.client))
        await storage.clear_namespace()
    _logs_clean(all_logs)


async def test_given_client_with_password_is_described_without_it(protected: RedisServer, all_logs: pytest.LogCaptureFixture) -> None:
    client = redis.asyncio.Redis(port=protected.port, password=PASSWORD, decode_responses=True)
    try:
        storage = RedisStorage(client, namespace="secrets-given")
        _no_secret(repr(storage))
        async with storage:
            await storage.set_state("k", 1)
            _no_secret(repr(storage), repr(storage.client))
            await storage.clear_namespace()
    finally:
        await client.aclose()
    _logs_clean(all_logs)


async def test_wrong_password_error_hides_both_passwords(protected: RedisServer, all_logs: pytest.LogCaptureFixture) -> None:
    wrong = "not-the-" + PASSWORD
    storage = open_storage(f"redis://:{wrong}@127.0.0.1:{protected.port}/0")
    with pytest.raises(StorageUnavailableError) as info:
        await storage.get_state("k")
    text = _error_text(info.value)
    _no_secret(text)
    assert "not-the-" not in text
    assert f"127.0.0.1:{protected.port}" in str(info.value)
    assert await storage.health() is False
    await storage.stop()
    _logs_clean(all_logs)
    assert "not-the-" not in all_logs.text


async def test_outage_errors_hide_the_password(protected: RedisServer, all_logs: pytest.LogCaptureFixture) -> None:
    storage = open_storage(protected.url + "?namespace=secrets-outage")
    await storage.set_state("k", 1)
    protected.stop()
    errors: list[BaseException] = []
    for call in (storage.get_state("k"), storage.set_state("k", 2), storage.increment("n"), storage.list_keys()):
        with pytest.raises(StorageUnavailableError) as info:
            await call
        errors.append(info.value)
    assert await storage.health() is False
    protected.start()  # no persistence: the server comes back empty, the storage reconnects
    await storage.set_state("k", 3)
    assert await storage.get_state("k") == 3
    await storage.clear_namespace()
    await storage.stop()
    for exc in errors:
        _no_secret(_error_text(exc))
    _logs_clean(all_logs)
