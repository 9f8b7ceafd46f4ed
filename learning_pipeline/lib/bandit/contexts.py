"""Context buckets as the posterior table names them, and the default evidence a bucket needs to answer.

The bucket rule has one home, the SQL macro `dbt_like_sql/macros/context_buckets.sql`: a context counts at
the broad level ('*', '*'), in one bucket per configured key with a value, e.g. ('complexity', 'high'), and,
when two or more configured keys have a value, in their joint bucket:

    context_key   = those keys sorted by name, joined by '&'        'complexity&domain'
    context_value = their values in that order, as a JSON array    '["high","legal"]'

`joint_bucket` names a request's joint bucket the same way (a test checks it against the macro), so key
order never matters. Context key names must not contain '&'.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

ALL = "*"
JOINT_SEPARATOR = "&"
# Events an agent needs in a context bucket before its row there counts (fewer: its broader row answers).
DEFAULT_MIN_EVIDENCE = 30


def is_joint(context_key: str) -> bool:
    return JOINT_SEPARATOR in context_key


def joint_bucket(values: Mapping[str, str]) -> tuple[str, str] | None:
    """(context_key, context_value) of the joint bucket of key -> value (text), or None for < 2 keys."""
    if len(values) < 2:
        return None
    keys = sorted(values)
    text = json.dumps([values[k] for k in keys], separators=(",", ":"), ensure_ascii=False)
    return JOINT_SEPARATOR.join(keys), text


def joint_parts(context_key: str, context_value: str) -> list[tuple[str, str]]:
    """The single-key buckets (key, value) a joint bucket is made of."""
    return list(zip(context_key.split(JOINT_SEPARATOR), json.loads(context_value), strict=True))
