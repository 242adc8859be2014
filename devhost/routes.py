"""HTTP route templates as the Functions host understands them.

Reproduces the ASP.NET-style templates of the host: literal segments, `{name}`,
optional `{name?}` (only as trailing segments), catch-all `{*name}`, and inline
constraints such as `{id:int}`, `{id:guid}`, `{name:alpha}`, `{n:range(1,9)}`,
`{s:length(2,8)}` or `{s:regex(^a+$)}`. Matching is case-insensitive on literals,
as in ASP.NET routing.
"""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from urllib.parse import unquote


class RouteTemplateError(ValueError):
    """A route template the host cannot honour."""


def _is_int(value: str) -> bool:
    return re.fullmatch(r"-?\d+", value) is not None


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip() == value and value.lower() not in ("nan", "inf", "-inf", "infinity")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _int_args(name: str, args: list[str], count: int) -> list[int]:
    if len(args) != count or not all(_is_int(a.strip()) for a in args):
        raise RouteTemplateError(f"constraint {name} takes {count} whole number(s)")
    return [int(a) for a in args]


def _constraint(spec: str):
    """Turn one constraint spec (`int`, `range(1,5)`, …) into a predicate on the raw value."""
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", spec, re.S)
    if not match:
        raise RouteTemplateError(f"unreadable route constraint '{spec}'")
    name, raw_args = match.group(1).lower(), match.group(2)
    if name == "regex":
        if raw_args is None:
            raise RouteTemplateError("constraint regex needs a pattern")
        pattern = re.compile(raw_args, re.IGNORECASE)
        return lambda v: pattern.search(v) is not None
    args = [] if raw_args is None else raw_args.split(",")
    simple = {
        "int": _is_int,
        "long": _is_int,
        "double": _is_number,
        "float": _is_number,
        "decimal": _is_number,
        "guid": _is_guid,
        "alpha": lambda v: re.fullmatch(r"[A-Za-z]+", v) is not None,
        "bool": lambda v: v.lower() in ("true", "false"),
    }
    if name in simple:
        if args:
            raise RouteTemplateError(f"constraint {name} takes no arguments")
        return simple[name]
    if name == "length":
        bounds = _int_args(name, args, len(args) if len(args) in (1, 2) else 0)
        low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else bounds
        return lambda v: low <= len(v) <= high
    if name == "minlength":
        (low,) = _int_args(name, args, 1)
        return lambda v: len(v) >= low
    if name == "maxlength":
        (high,) = _int_args(name, args, 1)
        return lambda v: len(v) <= high
    if name == "min":
        (low,) = _int_args(name, args, 1)
        return lambda v: _is_int(v) and int(v) >= low
    if name == "max":
        (high,) = _int_args(name, args, 1)
        return lambda v: _is_int(v) and int(v) <= high
    if name == "range":
        low, high = _int_args(name, args, 2)
        return lambda v: _is_int(v) and low <= int(v) <= high
    raise RouteTemplateError(f"unknown route constraint '{name}'")


@dataclass
class _Segment:
    literal: str | None = None
    name: str = ""  # a parameter's; literals have none
    optional: bool = False
    catch_all: bool = False
    checks: list = field(default_factory=list)


def _split_constraints(body: str) -> list[str]:
    """Split `name:int:range(1,5)` on colons that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in body:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == ":" and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


class RouteTemplate:
    """A compiled route template; `match(path)` gives the route values or None."""

    def __init__(self, template: str):
        self.template = template.strip("/")
        self.segments = [self._parse_segment(s) for s in self.template.split("/")] if self.template else []
        names = [s.name for s in self.segments if s.name]
        if len(names) != len(set(n.lower() for n in names)):
            raise RouteTemplateError(f"route '{template}' names a parameter twice")
        seen_optional = False
        for index, segment in enumerate(self.segments):
            if segment.catch_all and index != len(self.segments) - 1:
                raise RouteTemplateError(f"route '{template}': a catch-all must be the last segment")
            if seen_optional and not segment.optional and not segment.catch_all:
                raise RouteTemplateError(f"route '{template}': only trailing parameters may be optional")
            seen_optional = seen_optional or segment.optional

    @staticmethod
    def _parse_segment(text: str) -> _Segment:
        if not text:
            raise RouteTemplateError("route templates may not contain empty segments")
        if not (text.startswith("{") and text.endswith("}")):
            if "{" in text or "}" in text:
                raise RouteTemplateError(f"route segment '{text}' mixes literals and parameters")
            return _Segment(literal=text)
        parts = _split_constraints(text[1:-1])
        name = parts[0]
        segment = _Segment()
        if name.startswith("*"):
            segment.catch_all, name = True, name[1:]
        if name.endswith("?"):
            segment.optional, name = True, name[:-1]
        if not re.fullmatch(r"[A-Za-z_]\w*", name):
            raise RouteTemplateError(f"route parameter '{name}' is not a valid name")
        segment.name = name
        segment.checks = [_constraint(spec) for spec in parts[1:]]
        return segment

    def specificity(self) -> tuple:
        """Sort key: literal segments beat constrained parameters beat plain ones."""
        ranks = []
        for segment in self.segments:
            if segment.literal is not None:
                ranks.append(0)
            elif segment.catch_all:
                ranks.append(3)
            else:
                ranks.append(1 if segment.checks else 2)
        return tuple(ranks)

    def match(self, path: str) -> dict[str, str] | None:
        # Each segment is decoded on its own, so an encoded slash never splits a value.
        parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
        values: dict[str, str] = {}
        for index, segment in enumerate(self.segments):
            if segment.catch_all:
                rest = "/".join(parts[index:])
                if rest or segment.optional:
                    if rest:
                        values[segment.name] = rest
                    return values
                return None
            if index >= len(parts):
                return values if segment.optional else None
            part = parts[index]
            if segment.literal is not None:
                if part.lower() != segment.literal.lower():
                    return None
                continue
            if not part or not all(check(part) for check in segment.checks):
                return None
            values[segment.name] = part
        return values if len(parts) == len(self.segments) else None
