"""Standard Webhooks signatures: the reference libraries' test vectors, then tampering,
timestamps, rotation and malformed headers.

The vectors come from the reference implementation's tests (standard-webhooks/
standard-webhooks, ``libraries/python/tests/test_webhooks.py``, the same values in every
language's suite): a receiver using any of those libraries accepts what ``sign`` sends."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

import httpx
import pytest

from cadenza.net.webhook_signing import (
    WebhookVerificationError,
    decode_secret,
    message_id,
    sign,
    signature,
    verify,
)

# The reference vectors.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
PAYLOAD = '{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
INVALID = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="  # one character off
OTHERS = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="

FULLWIDTH = {ord(d): ord(d) + 0xFEE0 for d in "0123456789"}  # str.isdigit() says yes

OTHER_SECRET = "whsec_" + base64.b64encode(b"another secret of 24+ bytes!").decode()


def headers(sig: str = EXPECTED, ts: int = TIMESTAMP, msg_id: str = MSG_ID) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sig}


def rejected(match: str, *args: object, **kwargs: object) -> str:
    with pytest.raises(WebhookVerificationError, match=match) as info:
        verify(*args, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the reference vectors ---------------------------------------------------------------


def test_sign_produces_the_reference_signature() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP, PAYLOAD) == headers()


@pytest.mark.parametrize(
    "secret",
    [SECRET, SECRET.removeprefix("whsec_"), base64.b64decode(SECRET.removeprefix("whsec_"))],
    ids=["prefixed", "bare base64", "raw bytes"],
)
def test_the_secret_may_come_with_or_without_prefix_or_as_bytes(secret: str | bytes) -> None:
    assert signature(secret, MSG_ID, TIMESTAMP, PAYLOAD) == EXPECTED
    assert verify(secret, headers(), PAYLOAD, now=TIMESTAMP) == MSG_ID


def test_the_reference_signature_verifies_with_bytes_and_text_bodies() -> None:
    assert verify(SECRET, headers(), PAYLOAD.encode(), now=TIMESTAMP + 10) == MSG_ID
    assert verify(SECRET, headers(), PAYLOAD, now=TIMESTAMP - 10) == MSG_ID


def test_the_reference_invalid_signature_is_refused() -> None:
    rejected("no matching signature", SECRET, headers(INVALID), PAYLOAD, now=TIMESTAMP)


def test_the_reference_multi_signature_header_verifies() -> None:
    many = " ".join([OTHERS, "v2," + OTHERS[3:], EXPECTED, OTHERS])
    assert verify(SECRET, headers(many), PAYLOAD, now=TIMESTAMP) == MSG_ID


@pytest.mark.parametrize(
    "unpadded",
    [
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
        "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
    ],
    ids=["no padding needed", "one pad", "two pads"],
)
def test_unpadded_secrets_decode_like_padded_ones(unpadded: str) -> None:
    padded = unpadded + "=" * (-len(unpadded) % 4)
    key = base64.b64decode(padded)
    digest = hmac.new(key, f"{MSG_ID}.{TIMESTAMP}.{PAYLOAD}".encode(), hashlib.sha256).digest()
    sig = "v1," + base64.b64encode(digest).decode()
    for secret in (unpadded, padded, "whsec_" + unpadded):
        assert decode_secret(secret) == key
        assert verify(secret, headers(sig), PAYLOAD, now=TIMESTAMP) == MSG_ID


# -- tampering ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "given"),
    [
        ('{"test": 2432232315}', headers()),  # the body
        ('{"test":2432232314}', headers()),  # the same JSON, re-serialised
        (PAYLOAD, headers(msg_id="msg_other")),  # the id
        (PAYLOAD, headers(ts=TIMESTAMP + 1)),  # the timestamp, still within tolerance
    ],
    ids=["body", "re-serialised body", "id", "timestamp"],
)
def test_any_change_to_the_signed_parts_is_refused(body: str, given: dict[str, str]) -> None:
    rejected("no matching signature", SECRET, given, body, now=TIMESTAMP)


def test_a_wrong_secret_is_refused() -> None:
    message = rejected("no matching signature", OTHER_SECRET, headers(), PAYLOAD, now=TIMESTAMP)
    assert message == "no matching signature (1 readable v1 signature, 1 secret)"


# -- timestamps ---------------------------------------------------------------------------


@pytest.mark.parametrize("offset", [-300, 0, 300])
def test_timestamps_within_the_tolerance_pass(offset: int) -> None:
    assert verify(SECRET, headers(), PAYLOAD, now=TIMESTAMP + offset) == MSG_ID


def test_an_old_message_is_a_replay() -> None:
    message = rejected("too old", SECRET, headers(), PAYLOAD, now=TIMESTAMP + 301)
    assert message == "message timestamp too old: 301s ago, tolerance 300s"


def test_a_message_from_the_future_is_refused() -> None:
    rejected("too new", SECRET, headers(), PAYLOAD, now=TIMESTAMP - 301)


def test_the_tolerance_can_be_narrowed() -> None:
    rejected("too old", SECRET, headers(), PAYLOAD, now=TIMESTAMP + 61, tolerance=60)
    assert verify(SECRET, headers(), PAYLOAD, now=TIMESTAMP + 60, tolerance=60) == MSG_ID


def test_without_now_the_clock_is_the_current_time() -> None:
    now = int(time.time())
    sent = sign(SECRET, MSG_ID, now, PAYLOAD)
    assert verify(SECRET, sent, PAYLOAD) == MSG_ID
    rejected("too old", SECRET, headers(), PAYLOAD)  # the vector is from 2021


def test_a_fractional_timestamp_is_signed_as_whole_seconds() -> None:
    assert sign(SECRET, MSG_ID, TIMESTAMP + 0.9, PAYLOAD) == headers()


# -- rotation -----------------------------------------------------------------------------


def test_rotation_signs_with_every_secret_and_either_verifies() -> None:
    sent = sign([OTHER_SECRET, SECRET], MSG_ID, TIMESTAMP, PAYLOAD)
    new, old = sent["webhook-signature"].split(" ")
    assert old == EXPECTED and new == signature(OTHER_SECRET, MSG_ID, TIMESTAMP, PAYLOAD)
    for secrets in ([SECRET], [OTHER_SECRET], [OTHER_SECRET, SECRET], [SECRET, OTHER_SECRET]):
        assert verify(secrets, sent, PAYLOAD, now=TIMESTAMP) == MSG_ID


def test_a_receiver_holding_new_and_old_secrets_accepts_a_sender_not_yet_rotated() -> None:
    assert verify([OTHER_SECRET, SECRET], headers(), PAYLOAD, now=TIMESTAMP) == MSG_ID
    message = rejected("no matching", [OTHER_SECRET], headers(), PAYLOAD, now=TIMESTAMP)
    assert message.endswith("(1 readable v1 signature, 1 secret)")


# -- missing and malformed headers -------------------------------------------------------


@pytest.mark.parametrize("name", ["webhook-id", "webhook-timestamp", "webhook-signature"])
@pytest.mark.parametrize("how", ["absent", "empty"])
def test_a_missing_header_is_named(name: str, how: str) -> None:
    given = headers()
    if how == "absent":
        del given[name]
    else:
        given[name] = "  "
    assert rejected("missing header", SECRET, given, PAYLOAD, now=TIMESTAMP) == (
        f"missing header {name}"
    )


@pytest.mark.parametrize(
    "stamp",
    [
        "hello",
        "1614265330.5",
        "-1614265330",
        "01614265330",
        "1614265330".translate(FULLWIDTH),
        "0x6038",
    ],
)
def test_a_timestamp_that_is_not_unix_seconds_is_refused(stamp: str) -> None:
    given = headers() | {"webhook-timestamp": stamp}
    rejected("is not unix seconds", SECRET, given, PAYLOAD, now=TIMESTAMP)


@pytest.mark.parametrize(
    "garbled",
    ["v1", "v1,", "v1,!!!not-base64!!!", "v1,abc", "nocomma", "v1a,AAAA", "V1," + EXPECTED[3:]],
)
def test_garbled_signatures_are_skipped_not_crashed_on(garbled: str) -> None:
    rejected("no matching signature", SECRET, headers(garbled), PAYLOAD, now=TIMESTAMP)
    mixed = headers(f"  {garbled}   {EXPECTED} ")
    assert verify(SECRET, mixed, PAYLOAD, now=TIMESTAMP) == MSG_ID


def test_header_names_are_case_insensitive_in_any_mapping() -> None:
    upper = {k.title(): v for k, v in headers().items()}
    assert verify(SECRET, upper, PAYLOAD, now=TIMESTAMP) == MSG_ID
    assert verify(SECRET, httpx.Headers(upper), PAYLOAD, now=TIMESTAMP) == MSG_ID


# -- secrets and ids -----------------------------------------------------------------------


@pytest.mark.parametrize("secret", ["", "whsec_", b"", "whsec_not base64!", "whsec_abc*def"])
def test_empty_and_malformed_secrets_are_refused(secret: str | bytes) -> None:
    with pytest.raises(ValueError, match="webhook secret"):
        decode_secret(secret)
    with pytest.raises(ValueError):
        sign(secret, MSG_ID, TIMESTAMP, PAYLOAD)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "msg\n1", "msg_é"])
def test_sign_refuses_ids_that_would_make_the_signed_text_ambiguous(msg_id: str) -> None:
    with pytest.raises(ValueError, match="webhook id"):
        sign(SECRET, msg_id, TIMESTAMP, PAYLOAD)


def test_message_ids_keep_plain_keys_and_escape_the_rest_injectively() -> None:
    assert message_id("0f3a9c:notify") == "0f3a9c:notify"
    assert message_id("run:loop[2]/notify") == "run:loop[2]/notify"
    assert message_id("order.7:notify") == "order%2E7:notify"
    assert message_id("a b:é") == "a%20b:%C3%A9"
    keys = ["a.b", "a%2Eb", "a%b", "a%25b"]
    ids = [message_id(k) for k in keys]
    assert len(set(ids)) == len(keys)
    for msg_id in ids:
        assert sign(SECRET, msg_id, TIMESTAMP, PAYLOAD)["webhook-id"] == msg_id
