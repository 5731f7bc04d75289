"""Session string detection by structure (issue 19 item 7, issue 14 item 1): GramJS strings read
and written, either base64 alphabet accepted, nonsense addresses and ambiguous strings refused."""

from __future__ import annotations

import base64
import struct

import pytest

from statekit.errors import SessionFormatError
from statekit.session import SessionData, SessionSnapshot, export_string, import_string, strings
from statekit.session.strings import parse_string

KEY = bytes((i * 11 + 5) % 256 for i in range(256))
TO_STANDARD = str.maketrans("-_", "+/")
TO_URLSAFE = str.maketrans("+/", "-_")


def gramjs_string(dc_id: int, address: str, port: int, key: bytes = KEY) -> str:
    """A GramJS StringSession string built from its layout (gram-js StringSession.save)."""
    text = address.encode()
    raw = struct.pack(">BH", dc_id, len(text)) + text + struct.pack(">H", port) + key
    return "1" + base64.b64encode(raw).decode()


def data(**over: object) -> SessionData:
    fields: dict[str, object] = {
        "dc_id": 2,
        "auth_key": KEY,
        "server_address": "149.154.167.51",
        "port": 443,
        "api_id": 12345,
        "user_id": 777,
        "is_bot": False,
    }
    fields.update(over)
    return SessionData(**fields)  # type: ignore[arg-type]


def test_gramjs_ipv4_string_has_telethon_ipv6_length_and_reads_as_gramjs() -> None:
    text = gramjs_string(2, "149.154.167.51", 443)
    assert len(text) == 369 == len(export_string(data(server_address="2001:b28::a"), "telethon"))
    name, snap = parse_string(text)
    assert name == "gramjs"
    assert (snap.data.dc_id, snap.data.server_address, snap.data.port) == (2, "149.154.167.51", 443)
    assert snap.data.auth_key == KEY
    assert snap.data.test_mode is False


@pytest.mark.parametrize(
    "address", ["149.154.167.51", "2001:67c:4e8:f002::a", "149.154.167.40", "zws2.web.telegram.org"]
)
def test_gramjs_export_is_the_library_layout_and_reads_back(address: str) -> None:
    text = export_string(data(server_address=address), "gramjs")
    assert text == gramjs_string(2, address, 443)
    snap = import_string(text)
    assert snap.data.server_address == address
    assert snap.data.test_mode is (address == "149.154.167.40")


def test_gramjs_string_in_the_urlsafe_alphabet_still_reads_as_gramjs() -> None:
    # the old hint told users to swap alphabets: the result must not turn into a Telethon IPv6
    text = gramjs_string(4, "149.154.167.91", 443).translate(TO_URLSAFE)
    name, snap = parse_string(text)
    assert name == "gramjs"
    assert snap.data.server_address == "149.154.167.91"


def test_gramjs_export_refuses_what_gramjs_cannot_hold() -> None:
    with pytest.raises(ValueError, match="1-32767"):
        export_string(data(port=40000), "gramjs")
    with pytest.raises(ValueError, match="not a host name"):
        export_string(data(server_address="not an address"), "gramjs")


@pytest.mark.parametrize("fmt", ["pyrogram", "telethon"])
def test_standard_alphabet_strings_read_like_the_urlsafe_ones(fmt: str) -> None:
    text = export_string(data(), fmt)
    standard = text.translate(TO_STANDARD)
    assert standard != text  # the test key makes both alphabets differ
    assert import_string(standard) == import_string(text)
    assert parse_string(standard)[0] == fmt


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("e:3134:392e::", "reserved IP address"),
        ("::", "unspecified"),
        ("ff02::1", "multicast"),
        ("0.1.2.3", "reserved"),
    ],
)
def test_telethon_string_with_a_nonsense_address_is_refused(address: str, problem: str) -> None:
    import ipaddress

    ip = ipaddress.ip_address(address).packed
    layout = ">B4sH256s" if len(ip) == 4 else ">B16sH256s"
    text = "1" + base64.urlsafe_b64encode(struct.pack(layout, 2, ip, 443, KEY)).decode()
    with pytest.raises(SessionFormatError, match=f"{problem}.*nonsense address"):
        import_string(text)


@pytest.mark.parametrize("address", ["e", "1.2.3", "a b.c", "300.1.1.1", "-x.org"])
def test_gramjs_string_with_a_nonsense_address_is_refused(address: str) -> None:
    with pytest.raises(SessionFormatError, match="nonsense address"):
        import_string(gramjs_string(2, address, 443))


def test_port_zero_is_refused() -> None:
    with pytest.raises(SessionFormatError, match="port 0"):
        import_string(gramjs_string(2, "149.154.167.51", 0))


def test_a_string_that_two_formats_accept_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # no two real formats overlap; a second reader of the same structure shows the rule
    twin = (*strings._CANDIDATES, ("twin", strings._parse_pyrogram))
    monkeypatch.setattr(strings, "_CANDIDATES", twin)
    with pytest.raises(SessionFormatError, match="reads as pyrogram and twin alike"):
        import_string(export_string(data(), "pyrogram"))


def test_round_trip_between_every_string_format() -> None:
    source = SessionSnapshot(data())
    for fmt in ("telethon", "gramjs", "statekit"):
        back = import_string(export_string(source, fmt)).data
        assert (back.dc_id, back.server_address, back.port, back.auth_key) == (
            2,
            "149.154.167.51",
            443,
            KEY,
        )
