"""``statekit keys URL [PATTERN]`` and ``statekit get URL KEY``: look inside a store.

``get`` hides the secret fields of session records (``statekit.session.mask_secrets``) and
``keys`` the phone numbers in session index keys (``mask_key``) unless ``--show-secrets``; ``keys``
never prints values.
"""

from __future__ import annotations

import argparse
import pprint
import sys
from typing import Any

from statekit._cli._common import CLIError, add_json, jsonable, opened, print_json, run_async
from statekit.session.masking import mask_key, mask_secrets, readable
from statekit.storage.url import mask_url

__all__ = ["add_parsers"]

_URLS = """\
URL is a storage URL: memory://, sqlite:///relative.db, sqlite:////absolute.db,
redis://[user:password@]host:port/db, rediss://..., redis+cluster://host:port,
redis+sentinel://host:port/service. Add ?namespace=NAME to look into another namespace
(default: statekit)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``keys`` and ``get``."""
    keys = sub.add_parser(
        "keys",
        help="list the keys of a store",
        description="List the live keys of one namespace of a store that match a glob, sorted. "
        "Phone numbers in MTProto session index keys are hidden unless --show-secrets. " + _URLS,
        epilog="examples:\n"
        "  statekit keys sqlite:///statekit-demo.db 'demo:profile:*' --limit 5\n"
        "  statekit keys 'redis://127.0.0.1:6379/0?namespace=mybot' --json --limit 100",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys.add_argument("url", metavar="URL", help="storage URL")
    keys.add_argument(
        "pattern",
        metavar="PATTERN",
        nargs="?",
        default="*",
        help="Redis glob: * ? [abc] [^abc] [a-z], \\ escapes (default: *)",
    )
    keys.add_argument("--limit", type=int, default=None, metavar="N", help="print at most N keys")
    keys.add_argument("--ttl", action="store_true", help="also show each key's remaining seconds")
    keys.add_argument(
        "--show-secrets",
        action="store_true",
        help="print the phone numbers in session index keys instead of hiding them",
    )
    add_json(keys)
    keys.set_defaults(func=run_keys)

    get = sub.add_parser(
        "get",
        help="print the value of one key",
        description="Print the value stored under KEY and its remaining time to live. "
        "A key that does not exist is an error (exit status 1). " + _URLS,
        epilog="examples:\n"
        "  statekit get sqlite:///statekit-demo.db demo:profile:1000007\n"
        "  statekit get 'redis://127.0.0.1:6379/0?namespace=mybot' user:1 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    get.add_argument("url", metavar="URL", help="storage URL")
    get.add_argument("key", metavar="KEY", help="the key (exact, not a pattern)")
    get.add_argument(
        "--show-secrets",
        action="store_true",
        help="print secret fields of session records (auth keys; peers' access hashes and "
        "phone numbers) instead of hiding them",
    )
    add_json(get)
    get.set_defaults(func=run_get)


def run_keys(args: argparse.Namespace) -> int:
    """List keys; exit 0 even when none match."""
    if args.limit is not None and args.limit < 0:
        raise CLIError("--limit must be >= 0", 2)

    async def main() -> list[tuple[str, float | None]]:
        async with opened(args.url, must_exist=True) as storage:
            found = sorted(await storage.list_keys(args.pattern))
            if args.limit is not None:
                found = found[: args.limit]
            if not args.ttl:
                return [(k, None) for k in found]
            out = []
            for k in found:
                out.append((k, await storage.get_ttl(k)))
            return out

    rows = run_async(main())
    if not args.show_secrets:
        rows = [(mask_key(k), t) for k, t in rows]
    if args.json:
        if args.ttl:
            print_json([{"key": k, "ttl": t} for k, t in rows])
        else:
            print_json([k for k, _ in rows])
        return 0
    write = sys.stdout.write
    for key, ttl in rows:
        if args.ttl:
            write(f"{key}\t{'-' if ttl is None else f'{ttl:.3f}'}\n")
        else:
            write(key + "\n")
    return 0


def run_get(args: argparse.Namespace) -> int:
    """Print one value; a missing key is a ``CLIError``."""

    async def main() -> tuple[Any, float | None]:
        async with opened(args.url, must_exist=True) as storage:
            ttl = await storage.get_ttl(args.key)
            value = await storage.get_state(args.key)
            if value is None:
                raise CLIError(f"no key {args.key!r} in {mask_url(args.url)}")
            return value, ttl

    value, ttl = run_async(main())
    value = readable(args.key, value)  # a session's packed peer buckets, as rows
    hidden = False
    if not args.show_secrets:
        masked = mask_secrets(args.key, value)
        hidden = masked != value
        value = masked
    if args.json:
        doc = {"key": args.key, "ttl": ttl, "value": jsonable(value)}
        if hidden:
            doc["secrets_hidden"] = True
        print_json(doc)
        return 0
    shown = pprint.pformat(value, width=100, sort_dicts=False)
    sys.stdout.write(f"key:   {args.key}\n")
    sys.stdout.write(f"ttl:   {'no expiry' if ttl is None else f'{ttl:.3f} s'}\n")
    sys.stdout.write("value: " + shown.replace("\n", "\n       ") + "\n")
    if hidden:
        sys.stdout.write("note:  secret fields hidden (--show-secrets prints them)\n")
    return 0
