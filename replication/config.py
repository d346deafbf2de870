"""One config system: typed dataclasses from YAML, presets, ``key=value`` overrides and field markers.

Used by the classifier's :class:`~replication.training.config.TrainConfig`, the GAN's
:class:`~replication.gan.config.GanTrainConfig` and the table specs (:mod:`replication.experiments.spec`).

* :func:`from_dict` builds a dataclass from a mapping: nested dataclasses, ``X | None``,
  ``list[int]``, bool/int/float/str. A bool is not an int, an int is accepted for a float (and made a
  float unless ``ints_to_float=False``), an ``os.PathLike`` for a str. Unknown keys, missing required
  keys and wrong types raise a one-line :class:`~replication.errors.ConfigError` naming the dotted key.
* :func:`read_yaml` reads one YAML mapping; :func:`resolve_preset` turns a preset name into its
  YAML file in a preset folder (anything else is a path); :func:`apply_overrides` applies
  ``key=value`` strings (dotted keys for sections, values parsed as YAML).
* :func:`load` chains these and names the file (or ``<dict>``) in every error.
* Fields carry markers in their metadata, e.g. ``field(default="auto", metadata={RUNTIME: True})``:
  :data:`RUNTIME` (does not change the result: may change on ``--resume`` and is left out of a run
  directory's hash), :data:`RESUMABLE` (changes the result, but a ``--resume`` may change it: how long
  to train) and :data:`LOCATION` (a path of inputs or outputs: not hashed, the inputs are hashed
  by the steps that made them). :func:`marked_keys` lists the dotted keys of a marker.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

from replication.errors import ConfigError

T = TypeVar("T")

RUNTIME = "runtime"
RESUMABLE = "resumable"
LOCATION = "location"


# -- markers --------------------------------------------------------------------------------------
def marked_keys(cls: type, *markers: str, prefix: str = "") -> frozenset[str]:
    """Dotted names of the fields of dataclass ``cls`` (and its nested dataclasses) with any of ``markers``."""
    hints = typing.get_type_hints(cls)
    keys: set[str] = set()
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys |= marked_keys(hints[f.name], *markers, prefix=f"{prefix}{f.name}.")
        elif any(f.metadata.get(m) for m in markers):
            keys.add(prefix + f.name)
    return frozenset(keys)


def runtime_keys(cls: type) -> frozenset[str]:
    """Fields that do not change the result (:data:`RUNTIME`)."""
    return marked_keys(cls, RUNTIME)


def resumable_keys(cls: type) -> frozenset[str]:
    """Fields a ``--resume`` may change: :data:`RUNTIME` and :data:`RESUMABLE` ones."""
    return marked_keys(cls, RUNTIME, RESUMABLE)


def unhashed_keys(cls: type) -> frozenset[str]:
    """Fields left out of a run directory's hash: :data:`RUNTIME` and :data:`LOCATION` ones."""
    return marked_keys(cls, RUNTIME, LOCATION)


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping → ``{dotted key: leaf value}`` (in the mapping's order)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def without_keys(d: Mapping[str, Any], dotted: Iterable[str]) -> dict[str, Any]:
    """A copy of nested mapping ``d`` without the ``dotted`` keys (order of the rest kept)."""
    dotted = set(dotted)
    out: dict[str, Any] = {}
    for k, v in d.items():
        if k in dotted:
            continue
        inner = {key[len(k) + 1:] for key in dotted if key.startswith(k + ".")}
        out[k] = without_keys(v, inner) if inner and isinstance(v, Mapping) else v
    return out


# -- building from dicts --------------------------------------------------------------------------
def _check_scalar(key: str, value: Any, tp: Any, kind: str, ints_to_float: bool, numbers_to_str: bool) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{kind} key {key!r}: expected {expected}, got {value!r}")

    if tp is bool:
        if not isinstance(value, bool):
            raise bad("true/false")
        return value
    if isinstance(value, bool):
        raise bad({int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp)))
    if tp is int:
        if not isinstance(value, int):
            raise bad("an integer")
        return value
    if tp is float:
        if not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value) if ints_to_float else value
    if tp is str:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if numbers_to_str and isinstance(value, (int, float)):
            return str(value)
        if not isinstance(value, str):
            raise bad("a string")
        return value
    raise TypeError(f"unsupported annotation {tp!r} for {key}")  # pragma: no cover - programming error


def check_value(key: str, value: Any, tp: Any, *, kind: str = "config", ints_to_float: bool = True,
                numbers_to_str: bool = False) -> Any:
    """Coerce/validate ``value`` against the annotation ``tp``; :class:`ConfigError` naming ``key`` otherwise."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is not type(None):
                try:
                    return check_value(key, value, a, kind=kind, ints_to_float=ints_to_float,
                                       numbers_to_str=numbers_to_str)
                except ConfigError as e:
                    errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{kind} key {key!r}: bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{kind} key {key!r}: expected a list, got {value!r}")
        return [check_value(key, v, item, kind=kind, ints_to_float=ints_to_float, numbers_to_str=numbers_to_str)
                for v in value]
    return _check_scalar(key, value, tp, kind, ints_to_float, numbers_to_str)


def check_keys(raw: Mapping[str, Any], known: Iterable[str], *, kind: str = "config", prefix: str = "") -> None:
    """:class:`ConfigError` naming the first key of ``raw`` that is not in ``known``."""
    known = list(known)
    unknown = [k for k in raw if k not in known]
    if unknown:
        raise ConfigError(f"unknown {kind} key {prefix + str(unknown[0])!r} (known: {', '.join(sorted(known))})")


def from_dict(cls: type[T], raw: Any, *, kind: str = "config", prefix: str = "", ints_to_float: bool = True,
              numbers_to_str: bool = False) -> T:
    """Build dataclass ``cls`` from the mapping ``raw`` (missing keys take the defaults); see the module docstring."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{kind} section {prefix.rstrip('.') or '<root>'!r}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(raw, fields, kind=kind, prefix=prefix)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in raw.items():
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kwargs[k] = from_dict(tp, v or {}, kind=kind, prefix=f"{prefix}{k}.", ints_to_float=ints_to_float,
                                  numbers_to_str=numbers_to_str)
        else:
            kwargs[k] = check_value(prefix + k, v, tp, kind=kind, ints_to_float=ints_to_float,
                                    numbers_to_str=numbers_to_str)
    for name, f in fields.items():
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{kind} key {prefix + name!r} is required")
    return cls(**kwargs)


# -- files, presets and overrides -----------------------------------------------------------------
def read_yaml(path: str | os.PathLike, kind: str = "config") -> dict:
    """The YAML mapping in ``path`` (empty file: ``{}``); one-line :class:`ConfigError` naming the file otherwise."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read {kind} ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: malformed YAML ({str(e).splitlines()[0]})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a {kind} must be a YAML mapping")
    return raw


def list_presets(folder: Path) -> list[str]:
    """Names of the presets in ``folder`` (its ``*.yaml`` files)."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def resolve_preset(source: str | os.PathLike, folder: Path, kind: str = "config") -> Path:
    """The YAML file of a preset name in ``folder`` (``embedded``, ``paper-coco`` …), else ``source`` as a path."""
    s = os.fspath(source)
    preset = folder / f"{s}.yaml"
    if os.sep not in s and not s.endswith((".yaml", ".yml")) and preset.is_file():
        return preset
    p = Path(s)
    if not p.is_file():
        raise ConfigError(f"{s}: no such {kind} file or preset (presets: {', '.join(list_presets(folder))})")
    return p


def parse_override(item: str) -> tuple[str, Any]:
    """``"data.train=/x"`` → ``("data.train", "/x")``; the value is parsed as YAML (kept as text if it is not YAML)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip(), value


def apply_overrides(raw: Mapping[str, Any], overrides: Sequence[str], kind: str = "config") -> dict:
    """A copy of ``raw`` with the ``key=value`` ``overrides`` applied (dotted keys reach into sections)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for item in overrides:
        key, value = parse_override(item)
        *sections, leaf = key.split(".")
        node = out
        for part in sections:
            sub = node.get(part)
            if sub is None:
                sub = node[part] = {}
            elif not isinstance(sub, dict):
                raise ConfigError(f"unknown {kind} key {key!r} ({part!r} is not a section)")
            node = sub
        node[leaf] = value
    return out


def override_strings(value: Mapping[str, Any]) -> tuple[str, ...]:
    """A mapping of overrides as ``key=value`` strings (values in YAML flow style) for :func:`parse_override`."""
    out = []
    for k, v in value.items():
        text = v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip()
        if text.endswith("\n...") or text.endswith("..."):
            text = text.removesuffix("...").strip()
        out.append(f"{k}={text}")
    return tuple(out)


@contextmanager
def naming(origin: str | os.PathLike) -> Iterator[None]:
    """Prefix the message of any :class:`ConfigError` raised inside with ``origin`` (a file or ``<dict>``)."""
    try:
        yield
    except ConfigError as e:
        raise ConfigError(f"{origin}: {e}") from None


def load(cls: type[T], source: str | os.PathLike | Mapping[str, Any], overrides: Sequence[str] = (), *,
         presets: Path, kind: str = "config", check: Callable[[T], T] | None = None, **coercion: bool) -> T:
    """Build ``cls`` from a preset name, a YAML path or a mapping, then ``overrides``, then ``check``.

    Every :class:`ConfigError` names the file (``<dict>`` for a mapping). ``coercion`` goes to :func:`from_dict`.
    """
    if isinstance(source, Mapping):
        raw, origin = dict(source), "<dict>"
    else:
        path = resolve_preset(source, presets, kind)
        raw, origin = read_yaml(path, kind), str(path)
    with naming(origin):
        raw = apply_overrides(raw, overrides, kind)
        cfg = from_dict(cls, raw, kind=kind, **coercion)
        return check(cfg) if check is not None else cfg


__all__ = ["LOCATION", "RESUMABLE", "RUNTIME", "apply_overrides", "check_keys", "check_value", "flatten",
           "from_dict", "list_presets", "load", "marked_keys", "naming", "override_strings", "parse_override",
           "read_yaml", "resolve_preset", "resumable_keys", "runtime_keys", "unhashed_keys", "without_keys"]
