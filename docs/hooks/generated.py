"""mkdocs hook: reference pages generated from the code at build time.

A page holds a marker comment (``<!-- generated: cli -->``, ``rest-api``, ``metrics``)
that is replaced by text rendered from the code itself, so the reference cannot drift
from what ``ratemw`` does: the CLI from its argparse parser, the REST API from the
control plane's OpenAPI document, the metrics from the Prometheus export's tables. The
OpenAPI document itself is added to the site as ``reference/openapi.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Callable, Iterator
from typing import Any

_MARKER = re.compile(r"<!-- generated: ([a-z-]+) -->")
# Docstrings use Sphinx roles (:class:`~ratemw.X`), which mkdocstrings shows verbatim.
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|const):<code>(~?)([^<]*)</code>")


def cli_reference() -> str:
    """Every ``ratemw`` command and subcommand with its ``--help`` text."""
    from ratemw.cli import _parser  # the parser the console script runs

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "96"  # argparse wraps to the terminal: one width for the site
    try:
        parts = []
        for name, parser, depth in _walk(_parser(), "ratemw", 0):
            heading = "#" * min(2 + depth, 4)
            parts.append(f"{heading} `{name}`\n\n```text\n{parser.format_help().rstrip()}\n```\n")
        return "\n".join(parts)
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def _walk(
    parser: argparse.ArgumentParser, name: str, depth: int
) -> Iterator[tuple[str, argparse.ArgumentParser, int]]:
    yield name, parser, depth
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _walk(sub, f"{name} {sub_name}", depth + 1)


def openapi() -> dict[str, Any]:
    """The control plane's OpenAPI document, as ``/openapi.json`` serves it."""
    from ratemw.control.app import openapi_document

    return openapi_document()


def rest_api_reference() -> str:
    """One section per operation of the OpenAPI document, then its schemas."""
    doc = openapi()
    out = [
        f"OpenAPI {doc['openapi']}, document version `{doc['info']['version']}`: "
        "[openapi.json](openapi.json) (the same document the service serves at "
        "`/openapi.json`). Every operation takes `Authorization: Bearer TOKEN` unless "
        "marked *no authentication*; errors are `application/problem+json` "
        "([`Error`](#schema-error)).\n",
        "| method | path | operation | roles |",
        "|---|---|---|---|",
    ]
    ops = [
        (path, method, op)
        for path, methods in doc["paths"].items()
        for method, op in methods.items()
    ]
    for path, method, op in ops:
        roles = _roles(op)
        out.append(f"| {method.upper()} | `{path}` | [{op['summary']}](#{_anchor(op)}) | {roles} |")
    out.append("")
    for path, method, op in ops:
        out.append(f"### {method.upper()} `{path}` {{#{_anchor(op)}}}\n")
        out.append(f"{op['summary']}. {op.get('description', '')}".rstrip())
        if op.get("security") == []:
            out.append("\n*No authentication.*")
        params = op.get("parameters", [])
        if params:
            out += ["", "| parameter | in | type | required | meaning |", "|---|---|---|---|---|"]
            for p in params:
                out.append(
                    f"| `{p['name']}` | {p['in']} | {_type(p.get('schema', {}))} | "
                    f"{'yes' if p.get('required') else 'no'} | {p.get('description', '')} |"
                )
        body = op.get("requestBody")
        if body:
            kinds = ", ".join(
                f"`{media}` {_type(spec.get('schema', {}))}"
                for media, spec in body.get("content", {}).items()
            )
            out.append(f"\nRequest body: {kinds}.")
        out += ["", "| status | meaning | body |", "|---|---|---|"]
        for status, resp in op.get("responses", {}).items():
            content = resp.get("content", {})
            shape = ", ".join(_type(spec.get("schema", {})) for spec in content.values())
            out.append(f"| {status} | {resp.get('description', '')} | {shape or '-'} |")
        out.append("")
    out.append("## Schemas\n")
    for name, schema in doc["components"]["schemas"].items():
        text = json.dumps(schema, indent=2, sort_keys=False)
        out.append(f"### `{name}` {{#schema-{name.lower()}}}\n\n```json\n{text}\n```\n")
    return "\n".join(out)


def _anchor(op: dict[str, Any]) -> str:
    return "op-" + re.sub(r"[^a-z0-9]+", "-", str(op["operationId"]).lower())


def _roles(op: dict[str, Any]) -> str:
    if op.get("security") == []:
        return "none"
    match = re.search(r"Roles?: ([^.]*)\.", op.get("description", ""))
    return match.group(1) if match else "-"


def _type(schema: dict[str, Any]) -> str:
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f"[`{name}`](#schema-{name.lower()})"
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    return f"`{schema.get('type', 'any')}`"


def metrics_reference() -> str:
    """The metric families of the Prometheus export, from its own tables."""
    from ratemw.ops import prometheus as prom

    rows = ["| metric | type | labels | help |", "|---|---|---|---|"]

    def row(name: str, kind: str, labels: tuple[str, ...], text: str) -> None:
        shown = ", ".join(f"`{label}`" for label in labels) or "none"
        rows.append(f"| `{name}` | {kind} | {shown} | {text} |")

    for name, text, labels, _field in prom._COUNTERS:
        row(f"{name}_total", "counter", labels, text)
    for name, text, labels, _field, mode in prom._GAUGES:
        row(name, f"gauge ({mode[4:]} across processes)", labels, text)
    for name, text, _field, buckets in prom._HISTOGRAMS:
        row(name, f"histogram ({buckets[0]:g} s to {buckets[-1]:g} s)", (), text)
    return "\n".join(rows)


GENERATORS: dict[str, Callable[[], str]] = {
    "cli": cli_reference,
    "rest-api": rest_api_reference,
    "metrics": metrics_reference,
}


def expand(markdown: str) -> str:
    """``markdown`` with every generator marker replaced by its text."""

    def one(match: re.Match[str]) -> str:
        generator = GENERATORS.get(match.group(1))
        if generator is None:
            raise ValueError(f"unknown generated section {match.group(1)!r}")
        return generator()

    return _MARKER.sub(one, markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    """mkdocs event: expand the markers of a page."""
    return expand(markdown)


def _role(match: re.Match[str]) -> str:
    name = match.group(2).rsplit(".", 1)[-1] if match.group(1) else match.group(2)
    return f"<code>{name}</code>"


def on_page_content(html: str, **_: Any) -> str:
    """mkdocs event: Sphinx roles in rendered docstrings shown as plain code."""
    return _ROLE.sub(_role, html)


def on_files(files: Any, config: Any, **_: Any) -> Any:
    """mkdocs event: the OpenAPI document as a file of the site, beside the REST API
    page (so the page's link to it is checked like any other)."""
    from mkdocs.structure.files import File

    content = json.dumps(openapi(), indent=2) + "\n"
    files.append(File.generated(config, "reference/openapi.json", content=content))
    return files
