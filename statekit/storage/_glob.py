"""Redis glob patterns (``*``, ``?``, ``[abc]``, ``[^abc]``, ``[a-z]``, ``\\`` escapes) for backends
that match keys themselves. Matching is on UTF-8 bytes, case-sensitive, exactly as Redis does."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

__all__ = ["check_glob", "compile_glob", "escape_glob", "literal_prefix"]

_SPECIAL = frozenset("*?[]\\")


def escape_glob(text: str) -> str:
    """Return ``text`` with every glob metacharacter backslash-escaped."""
    return "".join("\\" + c if c in _SPECIAL else c for c in text)


def literal_prefix(pattern: str) -> str:
    """Return the longest literal text every match of ``pattern`` starts with."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "*?[":
            break
        if c == "\\":
            if i + 1 >= len(pattern):
                break
            out.append(pattern[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def check_glob(pattern: str) -> None:
    """Refuse a pattern that backends would not all match the same way: a ``[x-y]`` range with
    a non-ASCII end. Redis compares a range's ends as signed bytes (so ``[!-é]`` matches a space
    there and letters elsewhere); statekit refuses such a range on every backend with
    ``ValueError`` instead of answering differently. Non-ASCII characters elsewhere in a pattern
    (literals, sets, escapes; matched byte by byte) match the same everywhere and are accepted."""
    pat = pattern.encode("utf-8", "surrogatepass")
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == 0x5C:
            i += 2
        elif c == 0x5B:
            i += 1
            if i < n and pat[i] == 0x5E:
                i += 1
            while i < n and pat[i] != 0x5D:
                if pat[i] == 0x5C and i + 1 < n:
                    i += 2
                elif i + 2 < n and pat[i + 1] == 0x2D and pat[i + 2] != 0x5D:
                    if pat[i] >= 0x80 or pat[i + 2] >= 0x80:
                        raise ValueError(
                            f"pattern {pattern[:60]!r}: a [x-y] range with a non-ASCII end is "
                            "not supported (Redis compares such ends as signed bytes, so backends "
                            "would disagree); match with * or ? and filter the keys yourself"
                        )
                    i += 3
                else:
                    i += 1
            i += 1
        else:
            i += 1


def _byte(b: int) -> bytes:
    return re.escape(bytes([b]))


@lru_cache(maxsize=256)
def compile_glob(pattern: str) -> Callable[[str], bool]:
    """Return a predicate telling whether a key matches the Redis glob ``pattern``."""
    if pattern == "*":
        return lambda key: True
    pat = pattern.encode()
    parts: list[bytes] = []
    i, n = 0, len(pat)
    while i < n:
        c = pat[i]
        if c == 0x2A:  # *
            parts.append(b".*")
            i += 1
        elif c == 0x3F:  # ?
            parts.append(b".")
            i += 1
        elif c == 0x5C:  # backslash
            if i + 1 < n:
                parts.append(_byte(pat[i + 1]))
                i += 2
            else:
                parts.append(_byte(c))
                i += 1
        elif c == 0x5B:  # [
            i += 1
            negate = i < n and pat[i] == 0x5E
            if negate:
                i += 1
            items: list[bytes] = []
            while i < n and pat[i] != 0x5D:
                if pat[i] == 0x5C and i + 1 < n:
                    items.append(_byte(pat[i + 1]))
                    i += 2
                elif i + 2 < n and pat[i + 1] == 0x2D and pat[i + 2] != 0x5D:
                    lo, hi = sorted((pat[i], pat[i + 2]))
                    items.append(_byte(lo) + b"-" + _byte(hi))
                    i += 3
                else:
                    items.append(_byte(pat[i]))
                    i += 1
            i += 1  # the closing ]; an unterminated class runs to the end, as in Redis
            body = b"".join(items)
            if not body:
                parts.append(b"(?!)" if not negate else b".")
            else:
                parts.append(b"[" + (b"^" if negate else b"") + body + b"]")
        else:
            parts.append(_byte(c))
            i += 1
    regex = re.compile(b"".join(parts) + b"\\Z", re.DOTALL)
    match = regex.match
    return lambda key: match(key.encode()) is not None
