"""The scheme registry of ``open_storage``, the one credential masker, and URL errors: each one
clear ``ValueError`` that never quotes the URL."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from statekit import MemoryStorage, RedisStorage, SQLiteStorage, open_storage, register_storage
from statekit.storage import url as url_module
from statekit.storage.url import mask_url, registered_schemes
from statekit.testing import RedisServer, RedisServerUnavailable

ROOT = Path(__file__).resolve().parents[2]
BUILTIN = ["memory", "redis", "redis+cluster", "redis+sentinel", "rediss", "sqlite", "unix"]


@pytest.fixture
def clean_registry() -> Iterator[None]:
    saved = dict(url_module._registered), url_module._from_entry_points
    yield
    url_module._registered.clear()
    url_module._registered.update(saved[0])
    url_module._from_entry_points = saved[1]


# ---------------------------------------------------------------------- registry


def test_builtin_fallback_equals_the_pyproject_entry_points() -> None:
    # tomllib is 3.11's; on 3.10, tomli (a dependency of pytest there)
    tomllib = pytest.importorskip("tomllib" if sys.version_info >= (3, 11) else "tomli")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["statekit.storages"]
    assert {k: v for k, v in declared.items() if v.startswith("statekit.")} == dict(url_module._BUILTIN)


def test_installed_package_declares_its_schemes_as_entry_points() -> None:
    from importlib import metadata

    found = {ep.name: ep.value for ep in metadata.entry_points(group="statekit.storages")}
    if not found:
        pytest.skip("statekit is not installed (a source checkout): the built-in table applies")
    assert {name: found[name] for name in BUILTIN} == {k: url_module._BUILTIN[k] for k in BUILTIN}


def test_every_builtin_scheme_is_registered() -> None:
    assert set(BUILTIN) <= set(registered_schemes())


def test_a_source_checkout_without_metadata_still_opens_builtins(clean_registry: None) -> None:
    url_module._from_entry_points = {}
    assert isinstance(open_storage("memory://"), MemoryStorage)
    assert isinstance(open_storage("sqlite://:memory:"), SQLiteStorage)
    assert isinstance(open_storage("redis://127.0.0.1:1/0"), RedisStorage)


def test_unknown_scheme_lists_the_registered_ones(clean_registry: None) -> None:
    register_storage("extra", MemoryStorage)
    with pytest.raises(ValueError, match="unknown scheme 'ftp'") as info:
        open_storage("ftp://user:secret@host/x")
    message = str(info.value)
    for scheme in [*BUILTIN, "extra"]:
        assert f"{scheme}://" in message
    assert "secret" not in message


def test_register_a_string_target_imports_it_on_first_open(clean_registry: None) -> None:
    register_storage("lazy", "tests.thirdparty.dictstore:DictStorage")
    assert "lazy" in registered_schemes()
    storage = open_storage("lazy://?namespace=n")
    assert type(storage).__name__ == "DictStorage" and storage.namespace == "n"


def test_runtime_registration_wins_over_a_builtin(clean_registry: None) -> None:
    register_storage("memory", "tests.thirdparty.dictstore:DictStorage")
    assert type(open_storage("memory://")).__name__ == "DictStorage"


@pytest.mark.parametrize("scheme", ["", "Mem", "1x", "a b", "x://", None])
def test_register_refuses_a_bad_scheme(scheme: object) -> None:
    with pytest.raises(ValueError, match="scheme"):
        register_storage(scheme, MemoryStorage)  # type: ignore[arg-type]


def test_register_refuses_a_bad_target() -> None:
    with pytest.raises(ValueError, match="package.module:Class"):
        register_storage("x", "no_colon")
    with pytest.raises(TypeError, match="from_url"):
        register_storage("x", object())  # type: ignore[arg-type]


def test_two_packages_registering_one_scheme_is_an_error(clean_registry: None) -> None:
    url_module._from_entry_points = {"twice": ["a.b:C", "d.e:F"]}
    with pytest.raises(ValueError, match="twice.*a.b:C, d.e:F"):
        open_storage("twice://")


# ---------------------------------------------------------------------- the masker

RAW = "Xy7/Qz9@k:p"  # a password with a raw '/', '@' and ':'


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:pw@h:1/0", "redis://***@h:1/0"),
        ("redis://user:pw@h:1/0", "redis://***@h:1/0"),
        (f"redis://:{RAW}@127.0.0.1:6379/0", "redis://***@127.0.0.1:6379/0"),
        (f"redis+cluster://u:{RAW}@a:1,b:2", "redis+cluster://***@a:1,b:2"),
        ("redis://h:1/0?sentinel_password=s@cret&db=1", "redis://h:1/0?sentinel_password=***&db=1"),
        ("redis://h:1/0", "redis://h:1/0"),
        ("sqlite:///data/a@b.db", "sqlite:///data/a@b.db"),
        ("error at redis://:pw@h:1/0 and rediss://u:p/w@h2/1 done", "error at redis://***@h:1/0 and rediss://***@h2/1 done"),
        ("no url password=abc here", "no url password=*** here"),
        ("postgresql://app:s3/cr@t@db:5432/x", "postgresql://***@db:5432/x"),
        ("redis://:a://b@host/0", "redis://***@host/0"),
        ("x redis://:p@h/0 failed for user@example", "x redis://***@h/0 failed for user@example"),
    ],
)
def test_mask_url_hides_everything_up_to_the_last_at(text: str, masked: str) -> None:
    assert mask_url(text) == masked


# ---------------------------------------------------------------------- URL errors (issue 14)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis://127.0.0.1:6379/15?namspace=x", "unknown parameter 'namspace'"),
        ("redis://127.0.0.1:6379/abc", "db in the path is not a non-negative integer"),
        ("redis://127.0.0.1:6379/15/extra", "the path must be just the db number"),
        ("redis://127.0.0.1:6379/1?db=2", "db is given twice"),
        ("redis://127.0.0.1:notaport/0", "port is not a number"),
        ("redis://127.0.0.1:6379/0?socket_timeout=soon", "socket_timeout must be a number of seconds"),
        ("redis://127.0.0.1:6379/0?ssl_certfile=x", "unknown parameter 'ssl_certfile'"),
        (f"redis://:{RAW}@/0", "no host"),
        ("memory://?max_keys=0", "max_keys must be an integer >= 1"),
        ("memory://?max_keys=ten", "max_keys must be an integer >= 1"),
        ("memory://host", "no host or path"),
        ("memory://?namespace=a&namespace=b", "given twice"),
        ("sqlite:///x.db?durability=fast", "durability must be normal or full"),
        ("sqlite://relative.db", "sqlite:///relative.db"),
        ("memory://?default_ttl=1e20", "default_ttl must be a number of seconds"),
        ("nonsense", "does not start with scheme://"),
    ],
)
def test_every_url_error_names_the_problem(url: str, why: str) -> None:
    with pytest.raises(ValueError, match="accepted schemes") as info:
        open_storage(url)
    message = str(info.value)
    assert why in message
    assert RAW not in message and "Qz9" not in message


def test_redis_constructor_refuses_statekit_parameters_in_its_url() -> None:
    with pytest.raises(ValueError, match="namespace"):
        RedisStorage("redis://127.0.0.1:6379/0?namespace=x")


def test_memory_url_takes_max_keys_and_max_bytes() -> None:
    storage = open_storage("memory://?max_keys=5&max_bytes=2000000")
    assert isinstance(storage, MemoryStorage)
    assert (storage.max_keys, storage.max_bytes) == (5, 2000000)


def test_max_bytes_must_fit_one_value() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryStorage(max_bytes=1000)
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryStorage(max_bytes=2.5e6)  # type: ignore[arg-type]


async def test_max_bytes_evicts_least_recently_used() -> None:
    value = b"x" * 100_000
    async with MemoryStorage(max_bytes=1024 * 1024 + 1024 + 100) as storage:
        for i in range(20):
            await storage.set_state(f"k{i}", value)
            await storage.get_state("k0")  # recently used: kept
        assert storage._size <= storage.max_bytes  # type: ignore[operator]
        kept = await storage.list_keys()
        assert "k0" in kept and "k19" in kept and "k1" not in kept
        assert 8 <= len(kept) <= 11
        assert await storage.clear_namespace() == len(kept)
        assert storage._size == 0


# ---------------------------------------------------------------------- a real password


@pytest.fixture
def raw_password_server() -> Iterator[RedisServer]:
    try:
        server = RedisServer(password=RAW)
        server.start()
    except RedisServerUnavailable as exc:
        if os.environ.get("STATEKIT_REQUIRE_REDIS") == "1":
            pytest.fail(f"STATEKIT_REQUIRE_REDIS=1 but {exc}")
        pytest.skip(str(exc))
    yield server
    server.cleanup()


async def test_raw_slash_and_at_password_connects_and_never_shows(raw_password_server: RedisServer) -> None:
    url = f"redis://:{RAW}@127.0.0.1:{raw_password_server.port}/0?namespace=raw"
    storage = open_storage(url)
    assert RAW not in repr(storage) and "Qz9" not in repr(storage)
    async with storage:
        await storage.set_state("k", 1)
        assert await storage.get_state("k") == 1
        await storage.clear_namespace()
    wrong = open_storage(f"redis://:{RAW}x@127.0.0.1:{raw_password_server.port}/0")
    with pytest.raises(Exception) as info:  # noqa: PT011 - the type is checked below
        await wrong.get_state("k")
    assert type(info.value).__name__ == "StorageUnavailableError"
    assert "Qz9" not in str(info.value) and "Qz9" not in repr(wrong)
    await wrong.stop()


def test_cli_output_never_shows_a_raw_password(raw_password_server: RedisServer) -> None:
    url = f"redis://:{RAW}@127.0.0.1:{raw_password_server.port}/0"
    for args in (["keys", url], ["get", url, "missing"], ["keys", url.replace("/0", "/0/extra")],
                 ["keys", url.replace(RAW, RAW + "x")]):
        proc = subprocess.run([sys.executable, "-m", "statekit.cli", *args], capture_output=True,
                              text=True, cwd=ROOT, timeout=60)
        assert "Qz9" not in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
        assert (proc.returncode == 0) == (args == ["keys", url]), proc.stderr


def test_a_scheme_whose_backend_is_not_installed_says_so(clean_registry: None) -> None:
    register_storage("ghost", "statekit_ghost_backend.storage:GhostStorage")
    with pytest.raises(ImportError, match=r"ghost:// is served by statekit_ghost_backend\.storage:GhostStorage"):
        open_storage("ghost://u:secret@h/0")
