"""PII and secret redaction as DuckDB SQL: whole columns at once, never a Python loop per row.

Matches are replaced by typed placeholders ([EMAIL], [PHONE], [CARD], [SECRET]) and counted per type.
Rules run in a fixed order, so a secret that contains an e-mail address is one [SECRET], not a [SECRET]
and an [EMAIL]:

1. private key blocks (``-----BEGIN ... PRIVATE KEY----- ... -----END ... PRIVATE KEY-----``)
2. ``key = value`` / ``"key": "value"`` assignments whose key names a credential (api_key, secret,
   password, token, ...): the value becomes [SECRET], the key stays
3. ``Bearer <token>`` / ``Basic <token>``: the token becomes [SECRET]
4. provider keys by shape: OpenAI/Anthropic ``sk-...``, AWS ``AKIA...``/``ASIA...``, GitHub ``ghp_...``/
   ``github_pat_...``, Slack ``xox?-...``, Google ``AIza...``, JSON web tokens ``eyJ...``
5. e-mail addresses
6. payment card numbers: 13-19 digits (single spaces or dashes allowed between digits) with a card
   prefix (2, 3, 4, 5 or 6) that pass the Luhn checksum, computed in SQL with list lambdas
7. phone numbers: ``+<country> ...`` with at least 7 digits, or North-American ``(555) 123-4567`` /
   ``555-123-4567`` / ``555.123.4567``; separators are required, so bare numbers, dates, times,
   versions, IP addresses and UUIDs are left alone

Patterns are RE2 (DuckDB's regex engine): no look-around, so boundaries are captured and put back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

PII_TYPES: tuple[str, ...] = ("email", "phone", "card", "secret")
PLACEHOLDERS: dict[str, str] = {t: f"[{t.upper()}]" for t in PII_TYPES}


@dataclass(frozen=True)
class RegexRule:
    """Replace every match of `pattern` by `replacement` (RE2; `\\1` refers to a capture group)."""

    name: str
    pii_type: str
    pattern: str
    replacement: str


_CREDENTIAL_KEYS = (
    r"api[_-]?key|apikey|x-api-key|secret[_-]?key|client[_-]?secret|secret|private[_-]?key|"
    r"passw(?:or)?d|pwd|pass|access[_-]?token|auth[_-]?token|refresh[_-]?token|token|credentials?"
)

REGEX_RULES: tuple[RegexRule, ...] = (
    RegexRule(
        "private_key",
        "secret",
        r"(?s)-----BEGIN[A-Z ]*PRIVATE KEY-----.*?-----END[A-Z ]*PRIVATE KEY-----",
        "[SECRET]",
    ),
    RegexRule(
        "credential_assignment",
        "secret",
        r"(?i)\b("
        + _CREDENTIAL_KEYS
        + r")(\\?[\"']?\s*[:=]\s*\\?[\"']?)([^\s\"'\\,;&{}\[\]][^\s\"'\\,;&{}\]]*)",
        r"\1\2[SECRET]",
    ),
    RegexRule(
        "authorization_header",
        "secret",
        r"(?i)\b(bearer|basic)(\s+)([A-Za-z0-9._~+/-]{8,}=*)",
        r"\1\2[SECRET]",
    ),
    RegexRule("openai_style_key", "secret", r"\bsk-[A-Za-z0-9_-]{16,}", "[SECRET]"),
    RegexRule("aws_access_key", "secret", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", "[SECRET]"),
    RegexRule(
        "github_token", "secret", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{22,})", "[SECRET]"
    ),
    RegexRule("slack_token", "secret", r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "[SECRET]"),
    RegexRule("google_api_key", "secret", r"\bAIza[0-9A-Za-z_-]{35}", "[SECRET]"),
    RegexRule(
        "json_web_token",
        "secret",
        r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",
        "[SECRET]",
    ),
    RegexRule(
        "email",
        "email",
        r"[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}",
        "[EMAIL]",
    ),
)

# Card candidates: 13-19 digits, single space/dash separators, a card-network first digit.
CARD_CANDIDATE_PATTERN = r"\b[2-6](?:[ -]?\d){12,18}\b"

PHONE_RULES: tuple[RegexRule, ...] = (
    RegexRule(
        "phone_international",
        "phone",
        r"(^|[^\w+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{2,4}){2,5}\b",
        r"\1[PHONE]",
    ),
    RegexRule(
        "phone_north_american",
        "phone",
        r"(^|[^\w(])(?:\(\d{3}\)[ .-]?|\d{3}[ .-])\d{3}[ .-]\d{4}\b",
        r"\1[PHONE]",
    ),
)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def luhn_valid_sql(candidate: str) -> str:
    """SQL boolean: the digits of `candidate` (a VARCHAR expression) pass the Luhn checksum."""
    d = f"reverse(regexp_replace({candidate}, '[^0-9]', '', 'g'))"
    digit = f"cast(substr({d}, i + 1, 1) AS INTEGER)"
    term = f"CASE WHEN i % 2 = 0 THEN {digit} WHEN 2 * {digit} > 9 THEN 2 * {digit} - 9 ELSE 2 * {digit} END"
    return f"(list_sum(list_transform(range(length({d})), lambda i: {term})) % 10 = 0)"


def _scoped(pattern: str) -> str:
    """`(?i)body` -> `(?i:body)` so patterns with flags can be alternated."""
    if pattern.startswith("(?") and pattern[2:3].isalpha() and ")" in pattern:
        flags, body = pattern[2:].split(")", 1)
        if flags.isalpha():
            return f"(?{flags}:{body})"
    return f"(?:{pattern})"


# One pass that finds texts with anything to redact; the rules then run only on those.
ANY_PII_PATTERN = "|".join(
    _scoped(p)
    for p in [r.pattern for r in REGEX_RULES] + [CARD_CANDIDATE_PATTERN] + [r.pattern for r in PHONE_RULES]
)


def _count(column: str, pattern: str) -> str:
    return f"coalesce(len(regexp_extract_all({column}, {_lit(pattern)})), 0)"


def redaction_query(source_sql: str, columns: Sequence[str]) -> str:
    """A query over `source_sql` (a table name or a parenthesised query) that keeps every column,
    redacts `columns` in place and adds `pii_email`, `pii_phone`, `pii_card`, `pii_secret` counts
    (matches summed over the redacted columns)."""
    if not columns:
        raise ValueError("redaction_query needs at least one column to redact")
    cols = [_ident(c) for c in columns]
    hits = [f"__hit_{i}" for i in range(len(cols))]
    counters = ", ".join(f"0::BIGINT AS pii_{t}" for t in PII_TYPES)
    flags = ", ".join(
        f"coalesce(regexp_matches({c}, {_lit(ANY_PII_PATTERN)}), false) AS {h}"
        for c, h in zip(cols, hits, strict=False)
    )
    any_hit = " OR ".join(hits)
    # Rows without any candidate skip the rule chain entirely (most rows, and the chain is the cost).
    flagged = f"SELECT *, {counters}, {flags} FROM {source_sql}"
    query = f"SELECT * FROM __pii_flagged WHERE {any_hit}"

    def step(rule: RegexRule, query: str) -> str:
        # regexp_matches is a cheap search; most texts match no rule, so skip extraction and replacement.
        pattern = _lit(rule.pattern)
        replaced = ", ".join(
            f"CASE WHEN {h} AND regexp_matches({c}, {pattern}) "
            f"THEN regexp_replace({c}, {pattern}, {_lit(rule.replacement)}, 'g') ELSE {c} END AS {c}"
            for c, h in zip(cols, hits, strict=False)
        )
        counted = " + ".join(
            f"CASE WHEN {h} AND regexp_matches({c}, {pattern}) THEN {_count(c, rule.pattern)} ELSE 0 END"
            for c, h in zip(cols, hits, strict=False)
        )
        return (
            f"SELECT * REPLACE ({replaced}, pii_{rule.pii_type} + {counted} AS pii_{rule.pii_type}) "
            f"FROM ({query})"
        )

    for rule in REGEX_RULES:
        query = step(rule, query)

    # Cards: find candidates, keep those passing Luhn, then replace exactly those substrings.
    helpers = [f"__cards_{i}" for i in range(len(cols))]
    found = ", ".join(
        f"CASE WHEN {hit} AND regexp_matches({c}, {_lit(CARD_CANDIDATE_PATTERN)}) THEN "
        f"list_filter(regexp_extract_all({c}, {_lit(CARD_CANDIDATE_PATTERN)}), lambda m: {luhn_valid_sql('m')}) "
        f"END AS {h}"
        for c, h, hit in zip(cols, helpers, hits, strict=False)
    )
    query = f"SELECT *, {found} FROM ({query})"
    replaced = ", ".join(
        f"CASE WHEN {c} IS NULL OR coalesce(len({h}), 0) = 0 THEN {c} "
        f"ELSE list_reduce(list_prepend({c}, {h}), lambda acc, x: replace(acc, x, '[CARD]')) END AS {c}"
        for c, h in zip(cols, helpers, strict=False)
    )
    counted = " + ".join(f"coalesce(len({h}), 0)" for h in helpers)
    query = (
        f"SELECT * EXCLUDE ({', '.join(helpers)}) REPLACE ({replaced}, pii_card + {counted} AS pii_card) "
        f"FROM ({query})"
    )

    for rule in PHONE_RULES:
        query = step(rule, query)
    excluded = ", ".join(hits)
    return (
        f"WITH __pii_flagged AS MATERIALIZED ({flagged}) "
        f"SELECT * EXCLUDE ({excluded}) FROM __pii_flagged WHERE NOT ({any_hit}) "
        f"UNION ALL BY NAME SELECT * EXCLUDE ({excluded}) FROM ({query})"
    )


@dataclass(frozen=True)
class RedactionResult:
    texts: list[str | None]
    counts: dict[str, int]


def redact_table(
    table: pa.Table, columns: Sequence[str], con: duckdb.DuckDBPyConnection | None = None
) -> pa.Table:
    """Redact string `columns` of an Arrow table; adds the pii_* count columns."""
    own = con is None
    con = con or duckdb.connect()
    try:
        con.register("__pii_input", table)
        return con.sql(redaction_query("__pii_input", columns)).to_arrow_table()
    finally:
        con.unregister("__pii_input")
        if own:
            con.close()


def redact_texts(texts: Sequence[str | None]) -> RedactionResult:
    """Redact a list of strings (convenience for tests and ad-hoc use; the work is one DuckDB query)."""
    table = pa.table(
        {"text": pa.array(list(texts), pa.string()), "__pos": pa.array(range(len(texts)), pa.int64())}
    )
    out = redact_table(table, ["text"]).sort_by("__pos")
    counts = {t: int(pc.sum(out.column(f"pii_{t}")).as_py() or 0) for t in PII_TYPES}
    return RedactionResult(out.column("text").to_pylist(), counts)


def redact_text(text: str | None) -> str | None:
    return redact_texts([text]).texts[0]
