"""API keys: format, checksum, stored hash, and the refusals of :func:`verify`."""

from __future__ import annotations

import hashlib
import hmac
import inspect
import math
import subprocess
import sys
from dataclasses import replace

import pytest

from cadenza.core.errors import CadenzaError
from cadenza.server.auth import AuthenticationError, Identity, keys
from cadenza.server.auth.keys import KeyRecord, check_format, generate, key_hash, verify

NOW = 1_800_000_000.0
DAY = 86_400.0


@pytest.fixture
def issued() -> tuple[str, KeyRecord]:
    return generate("ci", ["operator"], now=NOW, lifetime=90 * DAY)


def refusal(key: str, record: KeyRecord, now: float = NOW) -> str:
    with pytest.raises(AuthenticationError) as caught:
        verify(key, record, now)
    message = str(caught.value)
    assert (not key or key not in message) and "\n" not in message
    return message


def test_generated_key_has_the_documented_shape(issued: tuple[str, KeyRecord]) -> None:
    key, record = issued
    assert key.startswith("cdz_") and len(key) == keys.KEY_LENGTH == 40
    assert set(key[4:]) <= set(keys.ALPHABET)
    assert keys.BODY_LENGTH * math.log2(62) >= 128
    check_format(key)
    assert record.hash == key_hash(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in repr(record)
    assert (record.name, record.roles, record.created) == ("ci", frozenset({"operator"}), NOW)
    assert record.expires == NOW + 90 * DAY and record.revoked is None


def test_keys_and_ids_are_unique() -> None:
    issued = [generate("ci", [], now=NOW) for _ in range(200)]
    assert len({key for key, _ in issued}) == len({r.id for _, r in issued}) == 200


def test_valid_key_proves_its_identity(issued: tuple[str, KeyRecord]) -> None:
    key, record = issued
    assert verify(key, record, NOW + DAY) == Identity(
        "key:ci", frozenset({"operator"}), "api_key", NOW + 90 * DAY
    )


def test_key_without_lifetime_never_expires() -> None:
    key, record = generate("nightly", ["viewer"], now=NOW)
    assert record.expires is None
    assert verify(key, record, NOW + 10_000 * DAY).expires is None


@pytest.mark.parametrize("position", range(4, 40))
def test_any_single_mistyped_character_fails_the_checksum(
    issued: tuple[str, KeyRecord], position: int
) -> None:
    key, record = issued
    for other in "0aZ":
        if key[position] != other:
            typo = key[:position] + other + key[position + 1 :]
            assert refusal(typo, record).startswith("malformed API key")


def test_swapped_neighbours_fail_the_checksum(issued: tuple[str, KeyRecord]) -> None:
    key, record = issued
    for i in range(4, 39):
        if key[i] != key[i + 1]:
            swapped = key[:i] + key[i + 1] + key[i] + key[i + 2 :]
            assert "checksum" in refusal(swapped, record)


@pytest.mark.parametrize(
    ("mangle", "reason"),
    [
        (lambda k: "ghp_" + k[4:], "start with cdz_"),
        (lambda k: k.upper(), "start with cdz_"),
        (lambda k: k[:-1], "expected 40 characters"),
        (lambda k: k + "0", "expected 40 characters"),
        (lambda k: k[:10] + "-" + k[11:], "letters and digits"),
        (lambda k: k[:10] + "é" + k[11:], "letters and digits"),
        (lambda k: "", "start with cdz_"),
    ],
    ids=["other-prefix", "upper-case", "truncated", "too-long", "dash", "non-ascii", "empty"],
)
def test_malformed_keys_are_refused_before_any_lookup(
    issued: tuple[str, KeyRecord], mangle: object, reason: str
) -> None:
    key, record = issued
    bad = mangle(key)  # type: ignore[operator]
    with pytest.raises(AuthenticationError, match=f"^malformed API key: .*{reason}"):
        check_format(bad)
    assert refusal(bad, record).startswith("malformed API key")


def test_well_formed_key_of_another_record_is_refused(issued: tuple[str, KeyRecord]) -> None:
    _, record = issued
    other, _ = generate("ci", ["operator"], now=NOW)
    assert refusal(other, record) == "API key not recognised"


def test_revoked_key_is_refused(issued: tuple[str, KeyRecord]) -> None:
    key, record = issued
    message = refusal(key, replace(record, revoked=NOW + 5), NOW + 10)
    assert message == f"API key {record.id} (ci) was revoked"


def test_key_expires_at_its_expiry(issued: tuple[str, KeyRecord]) -> None:
    key, record = issued
    assert verify(key, record, NOW + 90 * DAY - 1).name == "key:ci"
    assert refusal(key, record, NOW + 90 * DAY) == f"API key {record.id} (ci) expired"


def test_hashes_are_compared_in_constant_time(
    issued: tuple[str, KeyRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "hmac.compare_digest(key_hash(key), record.hash)" in inspect.getsource(verify)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    key, record = issued
    verify(key, record, NOW)
    assert (record.hash, record.hash) in calls


@pytest.mark.parametrize(
    ("name", "roles", "lifetime"),
    [
        ("", [], None),
        ("ci bot", [], None),
        ("oidc:ci", [], None),
        ("ci", [""], None),
        ("ci", [], 0),
        ("ci", [], -DAY),
    ],
)
def test_generate_refuses_bad_requests(name: str, roles: list[str], lifetime: float | None) -> None:
    with pytest.raises(CadenzaError):
        generate(name, roles, now=NOW, lifetime=lifetime)


def test_importing_cadenza_and_api_keys_needs_no_server_extra() -> None:
    blocked = "import sys; sys.modules.update(jwt=None, fastapi=None, cryptography=None)"
    code = f"{blocked}; import cadenza, cadenza.server.auth.keys; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr
