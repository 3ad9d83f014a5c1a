"""Templates and layouts: every SQL statement on ``template`` and ``template_version``.

A ``PUT`` adds a version; versions are never changed, so whatever pinned one (a notification at
accept) renders it the same forever. ``kind`` is ``template`` or ``layout``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, text

TEMPLATE = "template"
LAYOUT = "layout"

# The upsert locks the key's row, so concurrent PUTs of one key take turns and each gets the
# next number; a PUT revives an archived key.
_PUT = text(
    """
    WITH t AS (
        INSERT INTO template (project_id, kind, key, latest_version)
        VALUES (:project_id, :kind, :key, 1)
        ON CONFLICT (project_id, kind, key) DO UPDATE
        SET latest_version = template.latest_version + 1, updated_at = now(), archived_at = NULL
        RETURNING project_id, kind, key, latest_version
    )
    INSERT INTO template_version (project_id, kind, key, version, content)
    SELECT project_id, kind, key, latest_version, CAST(:content AS jsonb) FROM t
    RETURNING key, version, content, created_at
    """
)

_VERSION = text(
    """
    SELECT v.key, v.version, v.content, v.created_at, t.latest_version, t.archived_at
    FROM template t
    JOIN template_version v ON v.project_id = t.project_id AND v.kind = t.kind AND v.key = t.key
    WHERE t.project_id = :project_id AND t.kind = :kind AND t.key = :key
      AND v.version = COALESCE(:version, t.latest_version)
    """
)

_LIST = text(
    """
    SELECT v.key, v.version, v.content, v.created_at, t.latest_version, t.archived_at
    FROM template t
    JOIN template_version v ON v.project_id = t.project_id AND v.kind = t.kind AND v.key = t.key
                           AND v.version = t.latest_version
    WHERE t.project_id = :project_id AND t.kind = :kind AND t.key > :after
      AND (t.archived_at IS NULL OR :archived)
    ORDER BY t.key
    LIMIT :limit
    """
)

_ARCHIVE = text(
    """
    UPDATE template SET archived_at = now(), updated_at = now()
    WHERE project_id = :project_id AND kind = :kind AND key = :key AND archived_at IS NULL
    RETURNING key
    """
)

_EXISTS = text(
    """
    SELECT archived_at IS NULL AS live FROM template
    WHERE project_id = :project_id AND kind = :kind AND key = :key
    """
)

# What a send needs, in one query: the template version (the latest unless named), whether the
# template is archived, and its layout's latest version (None if it has none, or it is gone).
_FOR_SEND = text(
    """
    SELECT v.version, v.content, t.archived_at, l.latest_version AS layout_version,
           lv.content AS layout_content
    FROM template t
    JOIN template_version v ON v.project_id = t.project_id AND v.kind = t.kind AND v.key = t.key
                           AND v.version = COALESCE(:version, t.latest_version)
    LEFT JOIN template l ON l.project_id = t.project_id AND l.kind = 'layout'
                        AND l.key = v.content ->> 'layout' AND l.archived_at IS NULL
    LEFT JOIN template_version lv ON lv.project_id = l.project_id AND lv.kind = l.kind
                                 AND lv.key = l.key AND lv.version = l.latest_version
    WHERE t.project_id = :project_id AND t.kind = 'template' AND t.key = :key
    """
)

# The worker's: the template versions a chunk pinned and this process has not compiled yet,
# each with its pinned layout version, all in one query.
_CONTENTS = text(
    """
    SELECT w.project_id, w.key, w.version, w.layout_version, v.content,
           lv.content AS layout_content
    FROM unnest(CAST(:projects AS text[]), CAST(:keys AS text[]), CAST(:versions AS integer[]),
                CAST(:layout_versions AS integer[]))
         AS w(project_id, key, version, layout_version)
    JOIN template_version v ON v.project_id = w.project_id AND v.kind = 'template'
                           AND v.key = w.key AND v.version = w.version
    LEFT JOIN template_version lv ON lv.project_id = w.project_id AND lv.kind = 'layout'
                                 AND lv.key = v.content ->> 'layout'
                                 AND lv.version = w.layout_version
    """
)


@dataclass(frozen=True)
class Version:
    key: str
    version: int
    content: dict[str, Any]
    created_at: datetime
    latest_version: int
    archived_at: datetime | None


@dataclass(frozen=True)
class ForSend:
    version: int
    content: dict[str, Any]
    archived: bool
    layout_version: int | None
    layout_content: dict[str, Any] | None


def put(conn: Connection, project_id: str, kind: str, key: str, content: dict[str, Any]) -> Version:
    """Add the next version of ``key`` with ``content``; returns it."""
    row = conn.execute(
        _PUT,
        {
            "project_id": project_id,
            "kind": kind,
            "key": key,
            "content": orjson.dumps(content).decode(),
        },
    ).one()
    return Version(row.key, row.version, row.content, row.created_at, row.version, None)


def get(
    conn: Connection, project_id: str, kind: str, key: str, version: int | None = None
) -> Version | None:
    """One version of ``key`` (the latest if ``version`` is None), archived or not."""
    row = conn.execute(
        _VERSION, {"project_id": project_id, "kind": kind, "key": key, "version": version}
    ).first()
    return None if row is None else Version(*row)


def list_(
    conn: Connection, project_id: str, kind: str, after: str, limit: int, archived: bool
) -> list[Version]:
    """Up to ``limit`` keys after ``after`` in key order, each at its latest version."""
    rows = conn.execute(
        _LIST,
        {
            "project_id": project_id,
            "kind": kind,
            "after": after,
            "limit": limit,
            "archived": archived,
        },
    )
    return [Version(*row) for row in rows]


def archive(conn: Connection, project_id: str, kind: str, key: str) -> bool:
    """Archive ``key``; False if there is no such live key."""
    found = conn.execute(_ARCHIVE, {"project_id": project_id, "kind": kind, "key": key})
    return found.first() is not None


def is_live(conn: Connection, project_id: str, kind: str, key: str) -> bool:
    row = conn.execute(_EXISTS, {"project_id": project_id, "kind": kind, "key": key}).first()
    return bool(row is not None and row.live)


def for_send(conn: Connection, project_id: str, key: str, version: int | None) -> ForSend | None:
    row = conn.execute(
        _FOR_SEND, {"project_id": project_id, "key": key, "version": version}
    ).first()
    if row is None:
        return None
    return ForSend(
        row.version,
        row.content,
        row.archived_at is not None,
        row.layout_version,
        row.layout_content,
    )


def contents(
    conn: Connection, wanted: Sequence[tuple[str, str, int, int | None]]
) -> dict[tuple[str, str, int, int | None], tuple[dict[str, Any], dict[str, Any] | None]]:
    """The content of each (project, template key, version, layout version) in ``wanted``, and
    its layout's content at that layout version (None without a layout)."""
    if not wanted:
        return {}
    projects, keys, versions, layout_versions = (list(c) for c in zip(*wanted, strict=True))
    rows = conn.execute(
        _CONTENTS,
        {
            "projects": projects,
            "keys": keys,
            "versions": versions,
            "layout_versions": layout_versions,
        },
    )
    return {
        (r.project_id, r.key, r.version, r.layout_version): (r.content, r.layout_content)
        for r in rows
    }
