"""``python -m bench.template_engines``: python-liquid against Jinja2's SandboxedEnvironment.

The measured comparison behind the choice of template engine (README, "Templates"): the cost
of rendering a compiled two-variable template, and what each engine does with templates an
attacker would write, each tried in a child process with a deadline, as each engine comes
configured for untrusted templates (Liquid with its resource limits set, Jinja2's sandbox as
shipped). Nothing of the service is imported: this compares the libraries.
"""

from __future__ import annotations

import multiprocessing
import statistics
import time
from collections.abc import Callable
from typing import Any

TWO_VARIABLES_LIQUID = "Hi {{ user.name }}, order {{ data.orderId }} has shipped."
TWO_VARIABLES_JINJA = "Hi {{ user.name }}, order {{ data.orderId }} has shipped."
CONTEXT = {"user": {"name": "Ana"}, "data": {"orderId": 1234}}

# (what is tried, Liquid source, Jinja2 source)
ATTACKS: list[tuple[str, str, str]] = [
    (
        "class escape",
        "{{ user.__class__ }}{{ user.__class__.__mro__ }}",
        "{{ user.__class__.__mro__[1].__subclasses__() }}",
    ),
    ("method call on a value", "{{ user.name.upper }}", "{{ user.name.upper() }}"),
    ("attribute of a Python object", "{{ obj.secret }}", "{{ obj.secret }}"),
    (
        "nested loops (10^12 iterations)",
        "{% for a in (1..1000) %}{% for b in (1..1000) %}{% for c in (1..1000) %}"
        "{% for d in (1..1000) %}{% endfor %}{% endfor %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    ),
    (
        "billion laughs (doubling a string 40 times)",
        "{% assign a = 'lol' %}"
        + "".join("{% assign a = a | append: a %}" for _ in range(40))
        + "{{ a | size }}",
        "{% set a = 'lol' %}" + "{% set a = a ~ a %}" * 40 + "{{ a | length }}",
    ),
    (
        "huge output (1 GB)",
        "{% for a in (1..100) %}{% for b in (1..100) %}" + "x" * 1000 + "{% endfor %}{% endfor %}",
        "{{ 'x' * 1000000000 }}",
    ),
]


class _Secret:
    secret = "s3cr3t"


def _liquid_env() -> Any:
    from liquid import Environment

    class Limited(Environment):
        loop_iteration_limit = 10_000
        local_namespace_limit = 100_000
        output_stream_limit = 100_000

    return Limited()


def _jinja_env() -> Any:
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment()


def _render(engine: str, source: str) -> str:
    env = _liquid_env() if engine == "liquid" else _jinja_env()
    return str(env.from_string(source).render(**CONTEXT, obj=_Secret()))


def _child(engine: str, source: str, answer: Any) -> None:
    try:
        answer.put(("rendered", _render(engine, source)[:60]))
    except Exception as exc:
        answer.put(("refused", f"{type(exc).__name__}: {str(exc).splitlines()[0][:60]}"))


def attempt(engine: str, source: str, deadline: float = 5.0) -> tuple[str, str]:
    """What rendering ``source`` did within ``deadline`` seconds, in a child process (a runaway
    render cannot be stopped from inside the process)."""
    answer: Any = multiprocessing.Queue()
    child = multiprocessing.Process(target=_child, args=(engine, source, answer))
    started = time.perf_counter()
    child.start()
    child.join(deadline)
    if child.is_alive():
        child.kill()
        child.join()
        return "still running", f"killed after {deadline:.0f} s"
    took = time.perf_counter() - started
    if answer.empty():
        return "crashed", f"exit code {child.exitcode} after {took:.1f} s"
    outcome, detail = answer.get()
    return outcome, f"{detail} ({took:.2f} s)"


def render_cost(render: Callable[[], str], n: int = 20_000) -> float:
    """Median microseconds per render over five runs of ``n``."""
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(n):
            render()
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    liquid = _liquid_env().from_string(TWO_VARIABLES_LIQUID)
    jinja = _jinja_env().from_string(TWO_VARIABLES_JINJA)
    print("render of a compiled two-variable template (median µs):")
    print(f"  python-liquid  {render_cost(lambda: liquid.render(**CONTEXT)):.1f}")
    print(f"  Jinja2 sandbox {render_cost(lambda: jinja.render(**CONTEXT)):.1f}")
    print("compile (parse) of the same template (median µs):")
    liquid_parse = render_cost(lambda: _liquid_env().from_string(TWO_VARIABLES_LIQUID), 2000)
    jinja_parse = render_cost(lambda: _jinja_env().from_string(TWO_VARIABLES_JINJA), 2000)
    print(f"  python-liquid  {liquid_parse:.1f}")
    print(f"  Jinja2 sandbox {jinja_parse:.1f}")
    for name, liquid_source, jinja_source in ATTACKS:
        print(f"{name}:")
        print("  python-liquid  %s: %s" % attempt("liquid", liquid_source))  # noqa: UP031
        print("  Jinja2 sandbox %s: %s" % attempt("jinja", jinja_source))  # noqa: UP031


if __name__ == "__main__":
    main()
