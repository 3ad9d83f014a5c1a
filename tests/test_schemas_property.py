"""The request schema under arbitrary JSON: it validates or refuses, never anything else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.api.errors import ApiError
from app.api.schemas import NotificationCreate

SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20
)
FIELDS = [
    "type",
    "priority",
    "channels",
    "recipientEmail",
    "recipientPhone",
    "userId",
    "deviceTokens",
    "webhookUrl",
    "subject",
    "body",
    "htmlBody",
    "data",
    "sendAt",
    "expiresAt",
]
PLAUSIBLE = st.fixed_dictionaries(
    {},
    optional={
        **{name: JSON for name in FIELDS},
        "channels": st.lists(st.sampled_from(["EMAIL", "PUSH", "SMS", "WEBHOOK", "IN_APP", "FAX"])),
        "type": st.sampled_from(["TRANSACTIONAL", "MARKETING", "SYSTEM", "OTHER"]),
        "body": st.text(max_size=50),
        "recipientEmail": st.emails() | st.text(max_size=30),
        "sendAt": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    },
)


def _outcome(document: Any) -> NotificationCreate | ApiError:
    try:
        return NotificationCreate.model_validate_json(json.dumps(document))
    except ValidationError as exc:
        return ApiError.from_validation(exc)


@settings(max_examples=400, deadline=None)
@given(document=JSON | PLAUSIBLE)
def test_any_json_validates_or_is_refused_with_named_fields_and_nothing_else(document: Any) -> None:
    outcome = _outcome(document)

    if isinstance(outcome, ApiError):
        assert outcome.status in (400, 422)
        assert outcome.fields and all(f.rule and f.message for f in outcome.fields)
        assert all(f.field for f in outcome.fields) or outcome.status == 400
    else:
        dumped = outcome.model_dump(mode="json", by_alias=True, exclude_none=True)
        assert NotificationCreate.model_validate_json(json.dumps(dumped)) == outcome
        assert outcome.channels and len(set(outcome.channels)) == len(outcome.channels)
