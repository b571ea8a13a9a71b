"""Validation of OCSF events against the OCSF schema, as pydantic-ocsf ships it (fixed version).

pydantic-ocsf builds its models from the compiled schema it carries, and checks types,
required attributes, enum values, ``class_uid``/``type_uid`` and each ``*_id`` against its
caption. Its models keep unknown attributes (``extra="allow"``), so :func:`problems` adds what
a strict reader wants: no attribute the schema does not define (outside ``unmapped``), the
class and category captions, and the schema's ``at_least_one`` constraints.
"""

from __future__ import annotations

import importlib.resources
import json
from functools import cache
from typing import Any

import pydantic
from ocsf.v1_7_0.events import ApiActivity, Authentication, DatastoreActivity

from proxy.siem.ocsf import OCSF_VERSION

MODELS: dict[int, type[pydantic.BaseModel]] = {
    6005: DatastoreActivity,
    3002: Authentication,
    6003: ApiActivity,
}
CLASS_NAMES = {6005: "datastore_activity", 3002: "authentication", 6003: "api_activity"}


@cache
def schema() -> dict[str, Any]:
    name = "v" + OCSF_VERSION.replace(".", "_") + ".json"
    text = (importlib.resources.files("ocsf") / "schemas" / name).read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    assert loaded["version"] == OCSF_VERSION
    return loaded


def problems(event: dict[str, Any]) -> list[str]:
    """What is wrong with ``event`` as an OCSF event of its class; empty when it is valid."""
    model = MODELS.get(event.get("class_uid"))  # type: ignore[arg-type]
    if model is None:
        return [f"class_uid {event.get('class_uid')} is not one CypherGate emits"]
    try:
        validated = model.model_validate(event)
    except pydantic.ValidationError as exc:
        return [f"{error['loc']}: {error['msg']}" for error in exc.errors()]
    found = _extras(validated, "$")
    spec = schema()["events"][CLASS_NAMES[event["class_uid"]]]
    if event.get("class_name") != spec["caption"]:
        found.append(f"class_name {event.get('class_name')!r}, not {spec['caption']!r}")
    caption = _category_caption(schema()["categories_meta"], event.get("category_uid"))
    if event.get("category_name") != caption:
        found.append(f"category_name {event.get('category_name')!r}, not {caption!r}")
    found += _constraints(event, spec, "$")
    return found


def _category_caption(categories: dict[str, Any], uid: object) -> str | None:
    for entry in categories["attributes"].values():
        if entry.get("uid") == uid:
            return str(entry["caption"])
    return None


def _extras(value: object, path: str) -> list[str]:
    """Attributes the schema does not define, anywhere but under ``unmapped``."""
    found: list[str] = []
    if isinstance(value, pydantic.BaseModel):
        found += [f"{path}.{name}: not in the schema" for name in value.__pydantic_extra__ or {}]
        for name in type(value).model_fields:
            if name != "unmapped":
                found += _extras(getattr(value, name), f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _extras(item, f"{path}[{index}]")
    return found


def _constraints(value: dict[str, Any], spec: dict[str, Any], path: str) -> list[str]:
    """The schema's ``at_least_one`` constraints, on the event and every object in it."""
    found: list[str] = []
    needed = (spec.get("constraints") or {}).get("at_least_one")
    if needed and not any(value.get(name) is not None for name in needed):
        found.append(f"{path}: needs at least one of {needed}")
    dictionary = schema()["dictionary"]["attributes"]
    for name, item in value.items():
        attribute = (spec.get("attributes") or {}).get(name)
        if not isinstance(attribute, dict) or name == "unmapped":
            continue
        kind = attribute.get("object_type") or (dictionary.get(name) or {}).get("type")
        child = schema()["objects"].get(kind)
        if child is None:
            continue
        for index, element in enumerate(item if isinstance(item, list) else [item]):
            if isinstance(element, dict):
                found += _constraints(element, child, f"{path}.{name}[{index}]")
    return found
