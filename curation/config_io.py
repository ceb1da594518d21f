"""Typed YAML configs: strict schemas, `--set a.b=value` overrides, one-line errors.

Every command has one schema (a tree of `StrictModel`s). `load_config` reads a YAML file into it,
applies command-line overrides, and turns any problem into a `ConfigError` whose message names the
file (or the `--set` argument) and the key, so the CLI can print it as a single line.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Base of every config section: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class ConfigError(ValueError):
    """A config problem stated in one line: where it comes from, which key, what is wrong."""


Config = TypeVar("Config", bound=StrictModel)


def load_config(schema: type[Config], path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read `path` (or the schema's defaults when None), apply `key=value` overrides, validate."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = _read_yaml(Path(path))
    config = _validate(schema, data, source)
    for override in overrides:
        keys, value = parse_override(override)
        data = config.model_dump()
        _set_nested(data, keys, value, f"--set {override}")
        config = _validate(schema, data, f"--set {override}")
    return config


def save_config(config: StrictModel, path: str | Path) -> None:
    """Write the fully resolved config, so every output says what produced it."""
    Path(path).write_text(config_text(config), encoding="utf-8")


def config_text(config: StrictModel) -> str:
    """The fully resolved config as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


def parse_override(text: str) -> tuple[list[str], Any]:
    """`split.min_seconds=3` -> (['split', 'min_seconds'], 3). Values are typed as YAML reads them."""
    key, sep, raw = text.partition("=")
    keys = key.strip().split(".")
    if not sep or not all(keys):
        raise ConfigError(f"--set {text}: expected KEY=VALUE with a dotted key, e.g. split.min_seconds=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw  # not YAML (e.g. an unbalanced bracket in a path): keep the literal string
    return keys, value


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or "cannot be parsed"
        raise ConfigError(f"{path}: invalid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _set_nested(data: dict[str, Any], keys: list[str], value: Any, source: str) -> None:
    node = data
    for depth, key in enumerate(keys[:-1]):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(keys[: depth + 1])} is a value, not a section")
        node = child
    node[keys[-1]] = value


def _validate(schema: type[Config], data: dict[str, Any], source: str) -> Config:
    try:
        return schema.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(schema, error)}") from None


def _describe(schema: type[BaseModel], error: ValidationError) -> str:
    problems = error.errors()
    first = problems[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        message = f"unknown key {key}{_suggestion(schema, first['loc'])}"
    else:
        message = f"{key}: {first['msg']} (got {first['input']!r})"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    return message


def _suggestion(schema: type[BaseModel], loc: tuple) -> str:
    """'; did you mean split.min_seconds?' for a misspelt key, found by walking the schema."""
    model: Any = schema
    for part in loc[:-1]:
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return ""
        model = field.annotation
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return ""
    close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    if not close:
        return ""
    return "; did you mean " + ".".join([*map(str, loc[:-1]), close[0]]) + "?"
