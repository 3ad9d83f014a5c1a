"""The API floors: a bare Flask endpoint, and Flask doing two INSERTs in one transaction."""

from __future__ import annotations

import uuid

from flask import Flask, Response, request
from sqlalchemy import text

from app.core.db import make_engine
from bench.harness import SETTINGS

app = Flask(__name__)
engine = make_engine(SETTINGS, pool_size=8, pre_ping=False)


@app.post("/bare")
def bare() -> Response:
    request.get_json()
    return Response(f'{{"id": "{uuid.uuid4()}"}}', 202, mimetype="application/json")


@app.post("/naive")
def naive() -> Response:
    body = request.get_json()
    ident = uuid.uuid4()
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO bench_a (id, body) VALUES (:id, :body)"),
            {"id": str(ident), "body": body["body"]},
        )
        conn.execute(text("INSERT INTO bench_b (a_id) VALUES (:id)"), {"id": str(ident)})
    return Response(f'{{"id": "{ident}"}}', 202, mimetype="application/json")
