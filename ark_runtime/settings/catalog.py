"""What the declaration says about each variable, read back from the model's fields.

`VARIABLES` (name -> Variable) feeds the env schema file, `ark env check` and the protocol
doc, so none of them restates a type, a default or a domain.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

import annotated_types
from pydantic import StringConstraints
from pydantic.fields import FieldInfo

from ark_runtime.settings.fields import SECRET, Const, Kind
from ark_runtime.settings.model import FEATURE_PREFIX, UNITS, ArkSettings

_PLAIN_KINDS = {bool: "bool", int: "int", float: "float", str: "str"}


@dataclass(frozen=True)
class Variable:
    name: str  # the environment variable
    field: str  # the ArkSettings attribute
    kind: str  # str, int, float, port, bool, enum, host, url, path
    domain: str
    read_by: tuple[str, ...]
    sensitive: bool
    required: bool
    description: str
    default: Any
    default_text: str | None = None
    required_in: tuple[str, ...] = ()
    required_if: dict[str, str] = field(default_factory=dict)
    rules: dict[str, Any] = field(default_factory=dict)  # values, schemes, min, max, ...

    @property
    def units(self) -> list[str]:
        """The units whose env files carry this variable's domain."""
        return [u for u, domains in UNITS.items() if self.domain in domains]


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """(base type, Annotated metadata), looking through `X | None` and Annotated."""
    metadata: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
        elif origin is typing.Annotated:
            annotation, *extra = typing.get_args(annotation)
            metadata.extend(extra)
        else:
            return annotation, metadata


def _rules(metadata: list[Any]) -> dict[str, Any]:
    rules: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, annotated_types.Ge | annotated_types.Gt):
            rules["min"] = item.ge if isinstance(item, annotated_types.Ge) else item.gt
            rules["min_exclusive"] = isinstance(item, annotated_types.Gt)
        elif isinstance(item, annotated_types.Le):
            rules["max"] = item.le
        elif isinstance(item, StringConstraints):
            if item.min_length and item.min_length > 1:
                rules["min_length"] = item.min_length
            if item.pattern:
                rules["pattern"] = item.pattern
        elif isinstance(item, Const):
            rules["const"] = item.value
        elif type(item).__name__ == "_PydanticGeneralMetadata" and getattr(item, "pattern", None):
            rules["pattern"] = item.pattern
    if not rules.get("min_exclusive"):
        rules.pop("min_exclusive", None)
    return rules


def describe(field_name: str, info: FieldInfo) -> Variable:
    base, metadata = _unwrap(info.annotation)
    metadata = [*info.metadata, *metadata]
    extra = dict(info.json_schema_extra or {})  # type: ignore[arg-type]
    rules = _rules(metadata)
    kinds = [m for m in metadata if isinstance(m, Kind)]
    if kinds:
        kind = kinds[0].name
        if kinds[0].schemes:
            rules["schemes"] = list(kinds[0].schemes)
    elif typing.get_origin(base) is Literal:
        kind, rules["values"] = "enum", list(typing.get_args(base))
    else:
        kind = _PLAIN_KINDS[base]
    return Variable(
        name=info.alias or field_name, field=field_name, kind=kind, domain=extra["domain"],
        read_by=tuple(extra["read_by"]), sensitive=any(m is SECRET for m in metadata),
        required=extra["required"], description=info.description or "", default=info.default,
        default_text=extra.get("default_text"), required_in=tuple(extra.get("required_in", ())),
        required_if=dict(extra.get("required_if", {})), rules=rules,
    )


VARIABLES: dict[str, Variable] = {
    v.name: v for v in (describe(n, f) for n, f in ArkSettings.model_fields.items())
}
FEATURE_FLAG = Variable(
    name=f"{FEATURE_PREFIX}*", field="", kind="bool", domain="features", read_by=(),
    sensitive=False, required=False, description="Feature flag", default=False,
)


def spec_for(name: str) -> Variable | None:
    """The declaration of `name`; any undeclared ARK_FEATURE_* is a boolean feature flag."""
    if name in VARIABLES:
        return VARIABLES[name]
    if name.startswith(FEATURE_PREFIX) and len(name) > len(FEATURE_PREFIX):
        return FEATURE_FLAG
    return None


def default_of(name: str) -> Any:
    """The declared default of `name` (so no module restates it)."""
    return VARIABLES[name].default
