"""Routes and request validation from Google's own discovery documents.

The documents ship inside `google-api-python-client`; they are the API's published contract, so a
request the fake accepts is one the real service would parse. Validation is strict where Google's
parsers are: an unknown body field, a wrong JSON type, a value outside an enum, a name that misses
its pattern, a field the document marks required for this method, or an unknown query parameter.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import googleapiclient

DOCUMENTS = Path(googleapiclient.__file__).parent / "discovery_cache" / "documents"

_INT_RE = re.compile(r"-?\d+")


@dataclass(frozen=True)
class Method:
    """One discovery method: its id (`compute.instances.insert`), HTTP verb and path matcher."""

    id: str
    http_method: str
    regex: re.Pattern[str]
    literal_chars: int
    params: tuple[str, ...]
    spec: dict[str, Any]

    def path_params(self, path: str) -> dict[str, str]:
        match = self.regex.fullmatch(path)
        assert match is not None
        return dict(zip(self.params, match.groups(), strict=True))


class Api:
    """One discovery document (`compute.v1`), loaded once."""

    def __init__(self, name: str) -> None:
        self.doc: dict[str, Any] = json.loads((DOCUMENTS / f"{name}.json").read_text())
        self.name = name
        self.host = self.doc["rootUrl"].removeprefix("https://").rstrip("/")
        self.schemas: dict[str, Any] = self.doc["schemas"]
        self.methods = [
            _method(self.doc["servicePath"], m) for m in _walk_methods(self.doc.get("resources", {}))
        ]

    def route(self, http_method: str, path: str) -> tuple[Method | None, bool]:
        """The most specific method for the path, and whether the path matched under another verb."""
        candidates = [m for m in self.methods if m.regex.fullmatch(path)]
        exact = [m for m in candidates if m.http_method == http_method]
        if not exact:
            return None, bool(candidates)
        return max(exact, key=lambda m: m.literal_chars), True

    def validate_query(self, method: Method, query: dict[str, list[str]]) -> list[str]:
        known = {**self.doc.get("parameters", {}), **method.spec.get("parameters", {})}
        problems = []
        for key, values in query.items():
            param = known.get(key)
            if param is None or param.get("location") == "path":
                problems.append(
                    f'Invalid JSON payload received. Unknown name "{key}": Cannot bind query parameter.'
                )
                continue
            if len(values) > 1 and not param.get("repeated"):
                problems.append(f'Query parameter "{key}" given {len(values)} times but is not repeated.')
            for value in values:
                problems += _check_scalar(param, value, f"query parameter {key}", from_query=True)
        for key, param in known.items():
            if param.get("required") and param.get("location") == "query" and key not in query:
                problems.append(f'Required query parameter "{key}" is missing.')
        return problems

    def validate_body(self, method: Method, body: Any) -> list[str]:
        ref = method.spec.get("request", {}).get("$ref")
        if ref is None:
            return [] if body is None else ["this method takes no request body"]
        if not isinstance(body, dict):
            return [f"request body must be a JSON object ({ref})"]
        return self._check_object(self.schemas[ref], body, "resource", method.id)

    def _check_object(self, schema: dict[str, Any], value: Any, where: str, method_id: str) -> list[str]:
        if "$ref" in schema:
            schema = self.schemas[schema["$ref"]]
        if not isinstance(value, dict):
            return [f"Invalid value at '{where}': expected an object"]
        problems = []
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is not None:
            for key, item in value.items():
                if key not in props:
                    problems.append(
                        f"Invalid JSON payload received. Unknown name \"{key}\" at '{where}': "
                        "Cannot find field."
                    )
                else:
                    problems += self._check_value(props[key], item, f"{where}.{key}", method_id)
            for key, prop in props.items():
                if method_id in prop.get("annotations", {}).get("required", []) and key not in value:
                    problems.append(f"Required field '{where}.{key}' not specified")
        elif extra is not None:
            for key, item in value.items():
                problems += self._check_value(extra, item, f"{where}[{key!r}]", method_id)
        return problems

    def _check_value(self, schema: dict[str, Any], value: Any, where: str, method_id: str) -> list[str]:
        if value is None:
            return []
        if "$ref" in schema or schema.get("type") == "object":
            return self._check_object(schema, value, where, method_id)
        if schema.get("type") == "array":
            if not isinstance(value, list):
                return [f"Invalid value at '{where}': expected a list"]
            return [
                p
                for i, item in enumerate(value)
                for p in self._check_value(schema["items"], item, f"{where}[{i}]", method_id)
            ]
        return _check_scalar(schema, value, where)


def _walk_methods(resources: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for resource in resources.values():
        found += resource.get("methods", {}).values()
        found += _walk_methods(resource.get("resources", {}))
    return found


def _method(service_path: str, spec: dict[str, Any]) -> Method:
    template = service_path + spec.get("flatPath", spec["path"])
    pattern = ""
    literal = 0
    names = []
    for part in re.split(r"(\{\+?[^}]+\})", template):
        if part.startswith("{"):
            names.append(part.strip("{+}"))
            pattern += "(.+)" if part.startswith("{+") else "([^/:]+)"
        else:
            pattern += re.escape(part)
            literal += len(part)
    return Method(spec["id"], spec["httpMethod"], re.compile("/" + pattern), literal, tuple(names), spec)


def _check_scalar(schema: dict[str, Any], value: Any, where: str, *, from_query: bool = False) -> list[str]:
    kind = schema.get("type")
    fmt = schema.get("format", "")
    if kind == "string":
        if fmt in ("int64", "uint64") and not from_query:
            # JSON int64 fields are strings on the wire; Google's parser also takes JSON numbers.
            if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, str) and _INT_RE.fullmatch(value))
            ):
                return [f"Invalid value at '{where}' ({fmt}), {json.dumps(value)}"]
            return []
        if not isinstance(value, str):
            return [f"Invalid value at '{where}' (TYPE_STRING), {json.dumps(value)}"]
        if "enum" in schema and value not in schema["enum"]:
            return [f"Invalid value at '{where}' (enum), \"{value}\" is not one of {schema['enum']}"]
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            return [
                f"Invalid value for field '{where}': '{value}'. "
                f"Must be a match of regex '{schema['pattern']}'"
            ]
        return []
    if from_query:
        ok = {"integer": _INT_RE.fullmatch(str(value)), "boolean": value in ("true", "false")}.get(kind, True)
        return [] if ok else [f"Invalid value at '{where}' ({kind}), \"{value}\""]
    checks = {
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "boolean": isinstance(value, bool),
        "any": True,
    }
    if not checks.get(kind, True):
        return [f"Invalid value at '{where}' (TYPE_{str(kind).upper()}), {json.dumps(value)}"]
    return []
