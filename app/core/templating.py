"""Templates: compiling and rendering callers' Liquid templates, sandboxed and bounded.

Shared by the API (syntax at ``PUT``, strict variables at accept, preview) and the workers
(rendering per recipient). python-liquid was chosen for untrusted templates (README, "Why
Liquid"): a path looks up mapping keys and list indexes only, never a Python attribute, and
loops, assignments and output are bounded by the environment. The render time limit is ours:
a deadline checked on every lookup and every write to the output.
"""

from __future__ import annotations

import contextvars
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from io import StringIO
from typing import Any

from liquid import BoundTemplate, Environment, RenderContext, Undefined
from liquid.exceptions import (
    LiquidError,
    ResourceLimitError,
    UndefinedError,
)
from liquid.undefined import FalsyStrictUndefined
from markupsafe import Markup

from app.core.settings import Settings

# The template fields of each channel's content (WEBHOOK's payload is a JSON object whose
# string values are templates). EMAIL's html is rendered with HTML escaping, the rest as text.
CHANNEL_FIELDS: dict[str, tuple[str, ...]] = {
    "EMAIL": ("subject", "text", "html"),
    "SMS": ("body",),
    "PUSH": ("title", "body"),
    "IN_APP": ("title", "body"),
    "WEBHOOK": ("payload",),
}
LAYOUT_FIELDS = ("html", "text")
HTML_FIELDS = frozenset({"html"})


class TemplateProblem(Exception):
    """A template that cannot be compiled or rendered: ``rule`` names why (the API's rule)."""

    rule = "template_render_failed"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemplateSyntax(TemplateProblem):
    rule = "template_syntax"

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.line = line
        self.column = column


class VariableMissing(TemplateProblem):
    rule = "template_variable_missing"

    def __init__(self, variable: str) -> None:
        super().__init__(f"{variable} is not in the request's data")
        self.variable = variable


class RenderLimit(TemplateProblem):
    rule = "template_limit"


@dataclass(frozen=True)
class Limits:
    max_output_bytes: int = 100_000
    loop_iterations: int = 10_000
    namespace_bytes: int = 100_000
    render_timeout_ms: int = 200
    cache_size: int = 1000

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_output_bytes=settings.template_max_output_bytes,
            loop_iterations=settings.template_loop_limit,
            # Assignments may hold as much as the output may: a billion-laughs doubling stops
            # at the first assignment past it.
            namespace_bytes=settings.template_max_output_bytes,
            render_timeout_ms=settings.template_render_timeout_ms,
            cache_size=settings.template_cache_size,
        )


class _Timeout(ResourceLimitError):
    """The render passed its deadline."""


# The deadline of the render in progress on this thread (or greenlet); contexts and buffers
# that Liquid makes for captures and loops find it here.
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline")


def _check_deadline() -> None:
    if time.monotonic() > _DEADLINE.get(float("inf")):
        raise _Timeout("render time limit reached", token=None)


class _Buffer(StringIO):
    """Output bounded in bytes, and checked against the deadline on every write."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.size = 0

    def write(self, s: str) -> int:
        if s:
            _check_deadline()
            self.size += len(s.encode("utf-8"))
            if self.size > self.limit:
                raise RenderLimit("output larger than TEMPLATE_MAX_OUTPUT_BYTES")
        return super().write(s)


class _Context(RenderContext):
    def get_item(self, obj: Any, key: Any) -> Any:
        _check_deadline()
        return super().get_item(obj, key)

    def get_buffer(self, buf: Any = None) -> StringIO:
        carry = buf.size if isinstance(buf, _Buffer) else 0
        limit = self.env.output_stream_limit or 0
        return _Buffer(limit - carry)


class _Template(BoundTemplate):
    context_class = _Context


class _DataUndefined(FalsyStrictUndefined):
    """A missing ``data.*`` variable at accept: an error naming it, except where a template
    tests it (``{% if data.x %}``) or gives a default (``| default``)."""

    force_liquid_default = True


def _undefined_factory(strict_data: bool) -> Callable[..., Undefined]:
    def undefined(name: str, **kwargs: Any) -> Undefined:
        if strict_data and name == "data":
            return _DataUndefined(name, **kwargs)
        return Undefined(name, **kwargs)

    return undefined


def _environment(limits: Limits, autoescape: bool, strict_data: bool) -> Environment:
    class Bounded(Environment):
        loop_iteration_limit = limits.loop_iterations
        local_namespace_limit = limits.namespace_bytes
        output_stream_limit = limits.max_output_bytes
        template_class = _Template

    env = Bounded(autoescape=autoescape, strict_filters=True)
    env.undefined = _undefined_factory(strict_data)  # type: ignore[assignment]
    return env


def _position(exc: LiquidError, source: str) -> tuple[int, int]:
    """1-based line and column of the error; the end of the source when Liquid gives none."""
    context = exc.context()
    if context is not None:
        return context[0], context[1] + 1
    lines = source.split("\n")
    return len(lines), len(lines[-1]) + 1


_MISSING = re.compile(r"^(data(?:\.[^ ]+)?) is undefined")


@dataclass(frozen=True)
class Rendered:
    """One delivery's content, as sent: the locale used (None: the template's default)."""

    locale: str | None
    content: dict[str, Any]


class Templating:
    """One per process: Liquid environments and a cache of compiled template versions bounded
    by count (versions are immutable, so an entry never goes stale).

    ``strict_data``: the API's (accept and preview), where a ``data.*`` variable the request
    lacks is an error naming it; the workers render with missing variables empty, since what a
    request could leave out was refused at accept."""

    def __init__(self, limits: Limits, *, strict_data: bool) -> None:
        self.limits = limits
        self._text = _environment(limits, autoescape=False, strict_data=strict_data)
        self._html = _environment(limits, autoescape=True, strict_data=strict_data)
        self._cache: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def compile(self, source: str, html: bool = False) -> BoundTemplate:
        env = self._html if html else self._text
        try:
            return env.from_string(source)
        except LiquidError as exc:
            line, column = _position(exc, source)
            raise TemplateSyntax(str(exc.message), line, column) from None

    def syntax_errors(self, content: Any, path: str = "") -> list[tuple[str, TemplateSyntax]]:
        """Every template string of ``content`` (nested objects and lists) that does not
        compile, with its path (``channels.EMAIL.locales.fr.subject``)."""
        found: list[tuple[str, TemplateSyntax]] = []
        if isinstance(content, str):
            try:
                self.compile(content, html=path.rpartition(".")[2] in HTML_FIELDS)
            except TemplateSyntax as exc:
                found.append((path, exc))
        elif isinstance(content, Mapping):
            for key, value in content.items():
                found += self.syntax_errors(value, f"{path}.{key}" if path else str(key))
        elif isinstance(content, list):
            for index, value in enumerate(content):
                found += self.syntax_errors(value, f"{path}[{index}]")
        return found

    def compiled(self, cache_key: Hashable, content: Mapping[str, Any]) -> Any:
        """``content`` with every template string compiled, cached under ``cache_key``
        (project, kind, key, version): compiled once per version per process."""
        with self._lock:
            found = self._cache.get(cache_key)
            if found is not None:
                self._cache.move_to_end(cache_key)
                return found
        if "channels" in content:  # a template: its layout is a key, not a template
            built = {**content, "channels": self._compile_tree(content["channels"], "")}
        else:
            built = self._compile_tree(content, "")
        with self._lock:
            self._cache[cache_key] = built
            while len(self._cache) > self.limits.cache_size:
                self._cache.popitem(last=False)
        return built

    def cached(self, cache_key: Hashable) -> Any:
        """The compiled version under ``cache_key`` if this process has it, else None."""
        with self._lock:
            found = self._cache.get(cache_key)
            if found is not None:
                self._cache.move_to_end(cache_key)
            return found

    def _compile_tree(self, content: Any, field: str) -> Any:
        if isinstance(content, str):
            return self.compile(content, html=field in HTML_FIELDS)
        if isinstance(content, Mapping):
            return {key: self._compile_tree(value, key) for key, value in content.items()}
        if isinstance(content, list):
            return [self._compile_tree(value, field) for value in content]
        return content

    def render_channel(
        self,
        template: Mapping[str, Any],
        channel: str,
        locale: str | None,
        context: Mapping[str, Any],
        layout: Mapping[str, Any] | None = None,
    ) -> Rendered:
        """The content of ``channel`` for one recipient: the translation for ``locale`` (or its
        language, or the default), rendered with ``context`` (``data``, ``user``), EMAIL
        wrapped in ``layout`` (compiled), a text part derived from HTML when there is none.
        The whole render shares one deadline of ``TEMPLATE_RENDER_TIMEOUT_MS``."""
        channels = template["channels"]
        if channel not in channels:
            raise TemplateProblem(f"the template has no content for channel {channel}")
        default = channels[channel]
        chosen = choose_locale(default.get("locales") or {}, locale)
        fields = default if chosen is None else default["locales"][chosen]
        token = _DEADLINE.set(time.monotonic() + self.limits.render_timeout_ms / 1000)
        try:
            content = {
                name: self._render_tree(fields[name], context)
                for name in CHANNEL_FIELDS[channel]
                if name in fields
            }
            if channel == "EMAIL":
                content = self._email(content, context, layout)
        finally:
            _DEADLINE.reset(token)
        return Rendered(chosen, content)

    def _email(
        self,
        content: dict[str, Any],
        context: Mapping[str, Any],
        layout: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        if layout is not None:
            if "html" in content and "html" in layout:
                inner = {**context, "content": Markup(content["html"])}
                content["html"] = self._render(layout["html"], inner)
            if "text" in content and "text" in layout:
                inner = {**context, "content": content["text"]}
                content["text"] = self._render(layout["text"], inner)
        if "text" not in content and "html" in content:
            content["text"] = html_to_text(content["html"])
        return content

    def _render_tree(self, compiled: Any, context: Mapping[str, Any]) -> Any:
        if isinstance(compiled, BoundTemplate):
            return self._render(compiled, context)
        if isinstance(compiled, Mapping):
            return {key: self._render_tree(value, context) for key, value in compiled.items()}
        if isinstance(compiled, list):
            return [self._render_tree(value, context) for value in compiled]
        return compiled

    def _render(self, template: BoundTemplate, namespace: Mapping[str, Any]) -> str:
        context = template.context_class(template, globals=template.make_globals(namespace))
        buffer = _Buffer(self.limits.max_output_bytes)
        try:
            template.render_with_context(context, buffer)
        except RenderLimit:
            raise
        except UndefinedError as exc:
            found = _MISSING.match(str(exc.message))
            raise VariableMissing(found.group(1) if found else "data") from None
        except _Timeout:
            raise RenderLimit("render took longer than TEMPLATE_RENDER_TIMEOUT_MS") from None
        except ResourceLimitError as exc:
            raise RenderLimit(f"{exc.message}") from None
        except LiquidError as exc:
            raise TemplateProblem(f"{exc.message}") from None
        return buffer.getvalue()


def request_user(user_id: str | None, locale: str | None) -> dict[str, Any]:
    """``user`` in a template as the request alone describes the recipient (``user.id``,
    ``user.locale``); the recipient's profile, where there is one, adds to it."""
    return {key: value for key, value in (("id", user_id), ("locale", locale)) if value}


def choose_locale(available: Iterable[str], wanted: str | None) -> str | None:
    """The translation for ``wanted``: the exact tag, then each shorter prefix (``pt-BR`` →
    ``pt``), compared without case and with ``_`` as ``-``; None: the default content."""
    if not wanted:
        return None
    by_tag = {tag.lower().replace("_", "-"): tag for tag in available}
    parts = wanted.lower().replace("_", "-").split("-")
    for end in range(len(parts), 0, -1):
        found = by_tag.get("-".join(parts[:end]))
        if found is not None:
            return found
    return None


class _Text(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6"})
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A plain-text part for an email that has only HTML: the text, a line per block."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).split("\n"))
    return "\n".join(line for line in lines if line)
