"""``/api/v1/openapi.json``: the OpenAPI 3.1 document, generated from the app's routes and the
pydantic schemas its views validate with and answer in.

Every rule under ``/api/`` is an operation. Its path and path parameters come from the rule; its
tag from its blueprint (``tag(blueprint, ...)``); whether it needs a key, and which scope, from
the blueprint's ``before_request`` hooks (app/api/auth.py); what it takes and answers from the
view's ``@operation(...)``. A view without ``@operation`` is documented all the same (operationId
from the function's name, summary from its docstring), so no route can be left out; the tests
then ask for its examples. Error responses are added from what the operation does: a key means
401, 403, 429 and 503, a body 400, 413 and 422, parameters 422; all of them the one error schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from flask import Blueprint, Flask, current_app, jsonify
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, TypeAdapter
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from app.api.auth import require_api_key, required_scope
from app.api.schemas import ErrorBody, UserId

API_PREFIX = "/api/"
_REF = "#/components/schemas/{model}"
SECURITY_SCHEME = "apiKey"
_DOCUMENT = "openapi_document"

# What an operation answers with a status: a model, a JSON array of a model (``[Model]``), a raw
# JSON schema, or nothing (no body).
Answer = type[BaseModel] | list[type[BaseModel]] | dict[str, Any] | None

V = TypeVar("V", bound=Callable[..., Any])


@dataclass(frozen=True)
class Operation:
    """What a view takes and answers, as the document says it."""

    operation_id: str
    summary: str
    description: str | None = None
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    # Success answers (and any other answer that is not the error shape, such as health's 503).
    responses: Mapping[int, Answer] = field(default_factory=lambda: {200: None})
    errors: tuple[int, ...] = ()  # beyond those added from what the operation does
    headers: tuple[dict[str, Any], ...] = ()  # request header parameters
    # Path parameters whose schema is not the default one (``PATH_PARAMETERS``): name -> type.
    path: Mapping[str, Any] = field(default_factory=dict)


_OPERATIONS: dict[Callable[..., Any], Operation] = {}
_TAGS: dict[str, tuple[str, str]] = {}  # blueprint name -> (tag, description)

# The schema of a path parameter by its name in the rule; other names ending in ``_id`` are
# UUIDs, any other name a string. A route with a parameter of another kind passes ``path=``.
PATH_PARAMETERS: dict[str, Any] = {"user_id": UserId}

_SUCCESS = {200: "OK", 201: "Created", 202: "Accepted", 204: "No content"}
# status -> (the error code it usually carries, what it means)
ERRORS: dict[int, tuple[str, str]] = {
    400: ("malformed_json", "The body is not strict JSON, or not a JSON object."),
    401: ("unauthorized", "No API key, or not a live one."),
    403: ("insufficient_scope", "The key lacks the scope this operation needs."),
    404: ("not_found", "Nothing with this id in the caller's project."),
    409: ("conflict", "The request conflicts with the current state (see the error code)."),
    413: ("request_entity_too_large", "The body is larger than API_MAX_BODY_BYTES."),
    415: ("unsupported_media_type", "Content-Type is not application/json."),
    422: ("validation_failed", "Invalid input: each field and the rule it broke are named."),
    429: ("rate_limited", "Past the key's rate limit; retry after Retry-After seconds."),
    503: ("database_unavailable", "A dependency is unavailable; nothing was written. Retry."),
}
_RETRY_AFTER = {
    "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
}


def operation(
    operation_id: str,
    summary: str,
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    responses: Mapping[int, Answer] | None = None,
    errors: Iterable[int] = (),
    headers: Iterable[dict[str, Any]] = (),
    path: Mapping[str, Any] | None = None,
) -> Callable[[V], V]:
    """Document a view (put it below the route decorator). ``operation_id`` is the name
    generated clients give the call: keep it stable once published."""

    def register(view: V) -> V:
        _OPERATIONS[view] = Operation(
            operation_id=operation_id,
            summary=summary,
            description=_doc(view),
            body=body,
            query=query,
            responses=responses if responses is not None else {200: None},
            errors=tuple(errors),
            headers=tuple(headers),
            path=path or {},
        )
        return view

    return register


def tag(blueprint: Blueprint, name: str, description: str) -> None:
    """The tag (generated clients: the module) of every operation of ``blueprint``."""
    _TAGS[blueprint.name] = (name, description)


def _doc(view: Callable[..., Any]) -> str | None:
    text = (view.__doc__ or "").strip()
    return " ".join(text.split()) or None


def _undocumented(view: Callable[..., Any]) -> Operation:
    """A view nobody described: still in the document, named after its function."""
    doc = _doc(view)
    name = view.__name__
    return Operation(
        operation_id=to_camel(name)[0].lower() + to_camel(name)[1:],
        summary=(doc or name.replace("_", " ")).split(". ")[0],
        description=doc,
    )


def document(app: Flask) -> dict[str, Any]:
    """The document of ``app``'s routes, built once per app."""
    found: dict[str, Any] | None = app.extensions.get(_DOCUMENT)
    if found is None:
        found = app.extensions[_DOCUMENT] = _build(app)
    return found


@dataclass(frozen=True)
class _Route:
    path: str
    method: str
    blueprint: str
    authenticated: bool
    spec: Operation
    parameters: tuple[str, ...]


def _routes(app: Flask) -> list[_Route]:
    routes = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        blueprint = rule.endpoint.rpartition(".")[0]
        authenticated = require_api_key in app.before_request_funcs.get(blueprint, [])
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            routes.append(
                _Route(
                    path=path,
                    method=method.lower(),
                    blueprint=blueprint,
                    authenticated=authenticated,
                    spec=_OPERATIONS.get(view) or _undocumented(view),
                    parameters=tuple(_in_order(rule.rule)),
                )
            )
    return sorted(routes, key=lambda r: (r.path, r.method))


def _in_order(rule: str) -> list[str]:
    return re.findall(r"<(?:[^:<>]+:)?([^<>]+)>", rule)


def _models(routes: list[_Route]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
        (ErrorBody, "serialization"): None
    }
    for route in routes:
        if route.spec.body:
            wanted[(route.spec.body, "validation")] = None
        if route.spec.query:
            wanted[(route.spec.query, "validation")] = None
        for answer in route.spec.responses.values():
            model = _model_of(answer)
            if model:
                wanted[(model, "serialization")] = None
    return list(wanted)


def _model_of(answer: Answer) -> type[BaseModel] | None:
    if isinstance(answer, list):
        return answer[0]
    if isinstance(answer, type):
        return answer
    return None


def _build(app: Flask) -> dict[str, Any]:
    routes = _routes(app)
    refs, schemas = models_json_schema(_models(routes), by_alias=True, ref_template=_REF)
    components: dict[str, Any] = schemas.get("$defs", {})
    builder = _Builder(refs, components)
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for route in routes:
        name, description = _TAGS.get(route.blueprint, (route.blueprint.title(), ""))
        tags.setdefault(name, description)
        paths.setdefault(route.path, {})[route.method] = builder.operation(route, name)
    for query in builder.queries:  # only parameters: not a schema anyone sends or receives
        components.pop(query, None)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Notification service",
            "version": "1",
            "description": "Send email, push, SMS, webhook and in-app notifications reliably."
            " Authenticate with `Authorization: Bearer <API key>`; every error has one shape"
            " (`ErrorBody`) naming the field and the rule that failed.",
        },
        "tags": [{"name": n, "description": d} for n, d in tags.items()],
        "security": [{SECURITY_SCHEME: []}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`nsk_...`) with the scope the operation needs:"
                    " `read` for reads, `send` for changes, `admin` for API keys.",
                }
            },
        },
    }


class _Builder:
    def __init__(
        self,
        refs: Mapping[tuple[Any, JsonSchemaMode], dict[str, Any]],
        components: dict[str, Any],
    ) -> None:
        self.refs = refs
        self.components = components
        self.queries: set[str] = set()

    def operation(self, route: _Route, tag_name: str) -> dict[str, Any]:
        spec = route.spec
        built: dict[str, Any] = {
            "operationId": spec.operation_id,
            "summary": spec.summary,
            "tags": [tag_name],
        }
        description = spec.description or ""
        if route.authenticated:
            scope = required_scope(route.method.upper(), route.blueprint)
            description = f"{description}\n\nScope: `{scope}`.".strip()
        else:
            built["security"] = []  # no key needed
        if description:
            built["description"] = description
        parameters = [self._path_parameter(name, spec) for name in route.parameters]
        parameters += list(spec.headers)
        if spec.query:
            parameters += self._query_parameters(spec.query)
        if parameters:
            built["parameters"] = parameters
        if spec.body:
            built["requestBody"] = {
                "required": True,
                "content": {"application/json": self._media(spec.body, "validation")},
            }
        built["responses"] = self._responses(route, bool(parameters))
        return built

    def _responses(self, route: _Route, has_parameters: bool) -> dict[str, Any]:
        spec = route.spec
        responses: dict[str, Any] = {}
        for status, answer in sorted(spec.responses.items()):
            described: dict[str, Any] = {
                "description": _SUCCESS.get(status) or ERRORS.get(status, ("", "Answer"))[1]
            }
            if isinstance(answer, dict):
                described["content"] = {"application/json": {"schema": answer}}
            elif answer is not None:
                described["content"] = {"application/json": self._media(answer, "serialization")}
            responses[str(status)] = described
        errors = set(spec.errors)
        if route.authenticated:
            errors |= {401, 403, 429, 503}
        if spec.body:
            errors |= {400, 413, 422}
        if has_parameters:
            errors.add(422)
        for status in sorted(errors - set(spec.responses)):
            code, meaning = ERRORS[status]
            error: dict[str, Any] = {
                "description": meaning,
                "content": {
                    "application/json": {
                        "schema": self.refs[(ErrorBody, "serialization")],
                        "example": _error_example(status, code, meaning),
                    }
                },
            }
            if status in (429, 503):
                error["headers"] = _RETRY_AFTER
            responses[str(status)] = error
        return responses

    def _media(self, answer: type[BaseModel] | list[type[BaseModel]], mode: str) -> dict[str, Any]:
        model = _model_of(answer)
        assert model is not None
        ref = self.refs[(model, "validation" if mode == "validation" else "serialization")]
        example = _example(self.components, ref)
        if isinstance(answer, list):
            media: dict[str, Any] = {"schema": {"type": "array", "items": ref}}
            if example is not None:
                media["example"] = [example]
            return media
        media = {"schema": ref}
        if example is not None:
            media["example"] = example
        return media

    def _path_parameter(self, name: str, spec: Operation) -> dict[str, Any]:
        kind = spec.path.get(name) or PATH_PARAMETERS.get(name)
        if kind is not None:
            schema = TypeAdapter(kind).json_schema()
        elif name.endswith("_id"):
            schema = {"type": "string", "format": "uuid"}
        else:
            schema = {"type": "string"}
        return {"name": name, "in": "path", "required": True, "schema": schema}

    def _query_parameters(self, query: type[BaseModel]) -> list[dict[str, Any]]:
        ref = self.refs[(query, "validation")]["$ref"]
        name = ref.rsplit("/", 1)[1]
        self.queries.add(name)
        model = self.components[name]
        required = set(model.get("required", ()))
        parameters = []
        for prop, schema in model["properties"].items():
            schema = {k: v for k, v in schema.items() if k != "title"}
            description = schema.pop("description", None)
            # Absent is how a query string says "none": the parameter's schema is the value's.
            options = schema.get("anyOf")
            if options and {"type": "null"} in options:
                rest = [o for o in options if o != {"type": "null"}]
                schema.pop("anyOf")
                schema = {**(rest[0] if len(rest) == 1 else {"anyOf": rest}), **schema}
                if schema.get("default", 0) is None:
                    schema.pop("default")
            parameter: dict[str, Any] = {
                "name": prop,
                "in": "query",
                "required": prop in required,
                "schema": schema,
            }
            if description:
                parameter["description"] = description
            parameters.append(parameter)
        return parameters


def _example(components: Mapping[str, Any], ref: Mapping[str, str]) -> Any:
    examples = components[ref["$ref"].rsplit("/", 1)[1]].get("examples")
    return examples[0] if examples else None


def _error_example(status: int, code: str, meaning: str) -> dict[str, Any]:
    fields = []
    if status == 422:
        fields = [{"field": "channels[0]", "rule": "enum", "message": "Input should be 'EMAIL'"}]
    return {"error": {"code": code, "message": meaning, "fields": fields}}


# Served without a key: it holds no project's data, and generators and the /docs page fetch it
# as any newcomer would, by its URL alone.
blueprint = Blueprint("openapi", __name__)
tag(blueprint, "Meta", "This document (served without a key).")


@blueprint.get("/openapi.json")
@operation(
    "getOpenApiDocument",
    "This OpenAPI document",
    responses={200: {"type": "object", "description": "An OpenAPI 3.1 document"}},
)
def openapi_json() -> ResponseReturnValue:
    return jsonify(document(current_app))
