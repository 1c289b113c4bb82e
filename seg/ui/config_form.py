"""The start form, made from the config schema: one field per key of every section of
`TrainConfig`, its value from the chosen experiment YAML, its comment from that YAML's line.

What the form sends back becomes `--set key=value` overrides of the keys that changed, checked
by the same `load_config` the CLI uses, so an error names the key exactly as `seg train` does.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from seg import fs as segfs
from seg.config import TrainConfig, load_config

SECTION_LINE = re.compile(r"^(\w+):\s*(#.*)?$")
KEY_LINE = re.compile(r"^\s+(\w+):[^#]*(?:#\s?(.*))?$")


@dataclass(frozen=True)
class FormField:
    key: str  # "optim.lr"
    value: str  # as the input shows it (YAML: null, true, [1, 2])
    kind: str  # number | integer | boolean | choice | text
    choices: tuple[str, ...] = ()
    comment: str = ""


def yaml_comments(text: str) -> dict[str, str]:
    """{"optim.lr": "the comment at the end of its line"} for a sectioned YAML file."""
    out: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if m := SECTION_LINE.match(line):
            section = m.group(1)
        elif section and (m := KEY_LINE.match(line)) and m.group(2):
            out[f"{section}.{m.group(1)}"] = m.group(2).strip()
    return out


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    """The input kind of a field's type (Optional and Annotated looked through)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "choice", tuple(str(a) for a in typing.get_args(annotation))
    if origin is typing.Annotated or (origin is not None and len(args) == 1):
        return _kind(args[0])
    if annotation is bool:
        return "boolean", ()
    if annotation is int:
        return "integer", ()
    if annotation is float:
        return "number", ()
    return "text", ()


def as_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def form_fields(config: str | None) -> list[FormField]:
    cfg = load_config(TrainConfig, config)
    dumped = cfg.model_dump(mode="json")
    comments = yaml_comments(segfs.read_bytes(config).decode()) if config else {}
    fields = []
    for section, info in TrainConfig.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue  # notify: optional, edited in the YAML
        for key, sub in model.model_fields.items():
            name = f"{section}.{key}"
            kind, choices = _kind(sub.annotation)
            fields.append(
                FormField(
                    key=name,
                    value=as_text(dumped[section][key]),
                    kind=kind,
                    choices=choices,
                    comment=comments.get(name, sub.description or ""),
                )
            )
    return fields


def overrides(form: Mapping[str, str], fields: list[FormField]) -> list[str]:
    """`key=value` for every field whose submitted value differs from the YAML's; a key the
    schema does not have is passed on too, so the config check names it."""
    known = {f.key: f for f in fields}
    out = []
    for key, value in form.items():
        if "." not in key:
            continue  # the form's own fields (name, data, config, csrf)
        field = known.get(key)
        if field is None or value.strip() != field.value:
            out.append(f"{key}={value.strip()}")
    return out
