import pyarrow as pa
import pytest

from learning_pipeline.lib.events.pii import (
    PII_TYPES,
    redact_table,
    redact_text,
    redact_texts,
    redaction_query,
)

POSITIVE = [
    ("write to john.doe+tag@mail.example.co.uk today", "write to [EMAIL] today", "email"),
    ("card 4111 1111 1111 1111 expires", "card [CARD] expires", "card"),
    ("card 4111-1111-1111-1111", "card [CARD]", "card"),
    ("amex 378282246310005.", "amex [CARD].", "card"),
    ("mc 5555555555554444", "mc [CARD]", "card"),
    ("call +1 (555) 123-4567 now", "call [PHONE] now", "phone"),
    ("call 555-123-4567", "call [PHONE]", "phone"),
    ("call (555) 987 6543", "call [PHONE]", "phone"),
    ("london +44 20 7946 0958", "london [PHONE]", "phone"),
    ("simulated +1-555-0042.", "simulated [PHONE].", "phone"),
    ("key sk-proj-abcdefghijklmnop1234 used", "key [SECRET] used", "secret"),
    ("aws AKIAIOSFODNN7EXAMPLE", "aws [SECRET]", "secret"),
    ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [SECRET]", "secret"),
    ("Authorization: Bearer abc.def-ghi_jkl", "Authorization: Bearer [SECRET]", "secret"),
    ('{"api_key":"abc123xyz"}', '{"api_key":"[SECRET]"}', "secret"),
    ("api_key=zzz&x=1", "api_key=[SECRET]&x=1", "secret"),
    ("password: hunter2", "password: [SECRET]", "secret"),
    ("PASSWORD = 'p@ss w'", "PASSWORD = '[SECRET] w'", "secret"),
    (
        "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAK\n-----END RSA PRIVATE KEY----- end",
        "[SECRET] end",
        "secret",
    ),
    ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijk", "jwt [SECRET]", "secret"),
]

NEGATIVE = [
    "deployed on 2024-01-15 at 12:30:45",
    "request 123e4567-e89b-12d3-a456-426614174000 finished",
    "processed 1234567890 rows in 1700000000000 ms",
    "version v1.2.3 on 192.168.1.10:8080",
    "total 1,234,567.89 on 15/01/2024, order #55512345678",
    "card-like 4111 1111 1111 1112 fails the Luhn check",
    "tokens used: 1234 and the token was fine",
    "the password policy needs 12 characters",
    "sk-short",
    "a@b",
    "",
]


@pytest.mark.parametrize("text,expected,kind", POSITIVE)
def test_redacts_each_kind(text, expected, kind):
    result = redact_texts([text])
    assert result.texts == [expected]
    assert result.counts[kind] >= 1
    assert sum(result.counts.values()) == result.counts[kind]


@pytest.mark.parametrize("text", NEGATIVE)
def test_leaves_ordinary_text_alone(text):
    assert redact_text(text) == text


def test_nulls_counts_and_order_are_kept():
    texts = [None, "a@example.com and b@example.org", "nothing here", "4111111111111111 / 555-123-4567"]
    result = redact_texts(texts)
    assert result.texts == [None, "[EMAIL] and [EMAIL]", "nothing here", "[CARD] / [PHONE]"]
    assert result.counts == {"email": 2, "phone": 1, "card": 1, "secret": 0}


def test_redaction_is_idempotent():
    once = redact_texts([p[0] for p in POSITIVE]).texts
    twice = redact_texts(once)
    assert twice.texts == once
    assert sum(twice.counts.values()) == 0


def test_secret_wins_over_email_inside_it():
    assert redact_text("password=alice@example.com") == "password=[SECRET]"


def test_several_columns_and_row_counts():
    table = pa.table(
        {"a": ["x@example.com", "plain"], "b": ["+1 (555) 123-4567", "y@example.com"], "keep": [1, 2]}
    )
    out = redact_table(table, ["a", "b"]).sort_by("keep").to_pylist()
    assert out[0]["a"] == "[EMAIL]" and out[0]["b"] == "[PHONE]"
    assert (out[0]["pii_email"], out[0]["pii_phone"]) == (1, 1)
    assert out[1]["a"] == "plain" and out[1]["b"] == "[EMAIL]" and out[1]["pii_email"] == 1
    assert set(f"pii_{t}" for t in PII_TYPES) <= set(out[0])


def test_needs_columns():
    with pytest.raises(ValueError):
        redaction_query("t", [])
