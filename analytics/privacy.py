"""What never reaches a log: user ids (personal data a user may ask to have erased).

A query string or a set of filters is logged with each user id replaced by ``REDACTED``:
the access log, the audit line of an export, warnings that quote a request. The bid ids,
domains and the rest stay: they identify no person. Where a user must be named (an erasure's
audit line, its tombstone), it is by a keyed hash (``user_hash``).

Pure: no Django.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from urllib.parse import parse_qsl, urlencode

PERSONAL_PARAMETERS = frozenset({"user_id"})
REDACTED = "redacted"


def redacted_params(params: Mapping) -> dict:
    """The parameters as a plain dict (first value of each), personal ones replaced."""
    getter = params.get if hasattr(params, "getlist") else params.__getitem__
    return {name: (REDACTED if name in PERSONAL_PARAMETERS else getter(name)) for name in params}


def redacted_query(query_string: str) -> str:
    """A URL's query string with personal values replaced (order and other values kept)."""
    if not query_string or not any(f"{name}=" in query_string for name in PERSONAL_PARAMETERS):
        return query_string
    pairs = parse_qsl(query_string, keep_blank_values=True)
    return urlencode([(k, REDACTED if k in PERSONAL_PARAMETERS else v) for k, v in pairs])


def user_hash(user_id: str, key: str) -> str:
    """A user id as a keyed hash (HMAC-SHA256, hex): what the audit log and the erasure
    tombstones keep. Without the key a guessable id cannot be recovered from it."""
    return hmac.new(key.encode(), user_id.encode(), hashlib.sha256).hexdigest()
