"""The flag engine: config dataclasses whose fields are the flags of a binary.

A setting is one dataclass field declared with :func:`setting` (help text, choices, a
numeric range, whether it is a flag). A binary defines its flags with :func:`define_flags`
and reads them back as a checked config with :func:`from_flags`; libraries and tests build
the same configs from flat names with :func:`make`. Nested configs are flattened into
flags by field name (``ModelConfig.input_size`` is ``--input_size``), so a name means one
thing in every binary, and :func:`check_ranges` checks every declared range before a
binary does any work.

Second spellings of flags are handed in by the modules that own the configs
(:func:`register_aliases`), so this module imports none of them: it is the bottom layer
(absl only, imported lazily; no TensorFlow).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import typing
from typing import Any, Iterable, Mapping, Optional, Sequence

# {binary module: {spelling: flag}}: second spellings that stay, and old spellings accepted
# for one release with a warning; filled by :func:`register_aliases`.
_LASTING: dict = {}
_DEPRECATED: dict = {}


def register_aliases(lasting: Mapping[str, Mapping[str, str]] = None,
                     deprecated: Mapping[str, Mapping[str, str]] = None) -> None:
    """Registers second flag spellings per binary (``{binary: {alias: flag}}``).

    Args:
      lasting: spellings that stay (evaluate's ``--model`` for ``--model_dir``).
      deprecated: old spellings accepted for one release; :func:`warn_deprecated` warns.
    """
    for table, given in ((_LASTING, lasting), (_DEPRECATED, deprecated)):
        for binary, aliases in (given or {}).items():
            table.setdefault(binary, {}).update(aliases)


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices: Sequence = (),
            flag: bool = True, required: bool = False, item: type = str,
            factory: Any = None, minimum: Optional[float] = None,
            maximum: Optional[float] = None, above: Optional[float] = None,
            below: Optional[float] = None, unbounded: bool = False,
            repeated: bool = False, reason: str = "", path: bool = False) -> Any:
    """A config field and its flag.

    A numeric field declares its range here (``minimum``/``maximum``: inclusive bounds,
    ``above``/``below``: exclusive ones; a float must also be finite), or says
    ``unbounded=True``; :func:`check_ranges` checks every declaration before a binary does
    any work, so a new field gets its check by declaring it.

    Args:
      default: the default (or ``factory`` for a nested config).
      help: the flag's help text.
      choices: allowed values (an enum flag; for a list: allowed items).
      flag: False for a field derived from other settings (no flag).
      required: the flag must be given.
      item: type of a list flag's items (``int`` for layer widths).
      minimum, maximum: inclusive bounds (of each item, for a list).
      above, below: exclusive bounds.
      unbounded: a numeric field that takes any (finite) value.
      repeated: a list flag given once per item (``--x=a --x=b``) instead of comma-separated.
      reason: why the range is what it is, added to the refusal (``--clip_length=1:
        expected an integer >= 6 (room for an unsynchronized pair)``).
      path: a file or directory path: when given, it may not be empty or blank (an empty
        ``--data_dir=`` would otherwise mean the current directory, or a file named " "),
        nor lie below a file.
    """
    metadata = {"help": help, "choices": tuple(choices), "flag": flag, "required": required,
                "item": item, "minimum": minimum, "maximum": maximum, "above": above,
                "below": below, "unbounded": unbounded, "repeated": repeated,
                "reason": reason, "path": path}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


BOUND_KEYS = ("minimum", "maximum", "above", "below")


def _range_text(meta: Mapping[str, Any], numeric_type: type) -> str:
    """``"an integer >= 1"``, ``"a finite number in (0, 1]"``, ... from a field's bounds."""
    what = "an integer" if numeric_type is int else "a finite number"
    lo, hi = meta.get("minimum"), meta.get("maximum")
    lo_x, hi_x = meta.get("above"), meta.get("below")
    low = (f"[{lo}" if lo is not None else f"({lo_x}" if lo_x is not None else None)
    high = (f"{hi}]" if hi is not None else f"{hi_x})" if hi_x is not None else None)
    if low and high:
        return f"{what} in {low}, {high}"
    if low:
        return f"{what} {'>=' if lo is not None else '>'} {low[1:]}"
    if high:
        return f"{what} {'<=' if hi is not None else '<'} {high[:-1]}"
    return what


def _in_range(value, meta: Mapping[str, Any], numeric_type: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if numeric_type is int and not float(value).is_integer():
        return False
    if not math.isfinite(value):
        return False
    lo, hi, lo_x, hi_x = (meta.get(k) for k in BOUND_KEYS)
    return ((lo is None or value >= lo) and (hi is None or value <= hi)
            and (lo_x is None or value > lo_x) and (hi_x is None or value < hi_x))


def numeric_type(cls, field: dataclasses.Field) -> Optional[type]:
    """``int`` or ``float`` for a numeric field (or a list of numbers), else None."""
    tp = _base(_hints(cls)[field.name])
    if tp is tuple:
        tp = field.metadata.get("item", str)
    return tp if tp in (int, float) else None


def check_ranges(config) -> None:
    """Checks every field of ``config`` (nested configs too) against its declaration.

    Declared choices, numeric bounds (:func:`setting`), finiteness of floats and non-blank
    paths; None (an optional setting left unset) passes. Needs no data, so binaries call it before
    anything is read or written.

    Raises:
      ValueError: ``--name=value: expected ...`` for the first bad field (a derived field,
        which has no flag, is named without the dashes).
    """
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            check_ranges(value)
            continue
        if value is None:
            continue
        meta = f.metadata
        name = f"--{f.name}" if meta.get("flag", True) else f.name
        items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
        shown = ",".join(map(str, items)) if isinstance(value, (tuple, list)) else value
        if meta.get("path") and isinstance(value, str):
            _check_path(name, value)
        choices = meta.get("choices") or ()
        if choices and any(v not in choices for v in items):
            many = isinstance(value, (tuple, list))
            raise ValueError(f"{name}={shown}: expected {'items from' if many else 'one of'} "
                             f"{','.join(map(str, choices))}")
        tp = numeric_type(type(config), f)
        if tp is not None and not all(_in_range(v, meta, tp) for v in items):
            many = isinstance(value, (tuple, list))
            why = f" ({meta['reason']})" if meta.get("reason") else ""
            raise ValueError(f"{name}={shown}: expected "
                             f"{'items each ' if many else ''}{_range_text(meta, tp)}{why}")


def _check_path(name: str, value: str) -> None:
    """A path setting: not blank, and not below a file (where nothing can be read or
    written: found before the work, not when the first output is written)."""
    if not value.strip():
        raise ValueError(f"{name} is empty; expected a path" if not value else
                         f"{name}={value!r} is blank; expected a path")
    parent = os.path.dirname(os.path.abspath(value))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{name}={value}: {parent} is a file, expected a directory there")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_config(tp) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _base(tp):
    """``Optional[X]`` -> ``X``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if typing.get_origin(tp) is typing.Union and len(args) == 1 else tp


def flag_fields(cls, default=None, exclude: Iterable[str] = ()) -> list:
    """``[(name, type, default, metadata)]`` of the flags of config ``cls``, nested configs
    flattened, in field order; ``default`` is the instance whose values are the defaults."""
    exclude = set(exclude)
    default = default if default is not None else _default_instance(cls)
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = _base(hints[f.name])
        if _is_config(tp):
            out += flag_fields(tp, getattr(default, f.name), exclude)
        elif f.metadata.get("flag", True) and f.name not in exclude:
            out.append((f.name, tp, getattr(default, f.name), f.metadata))
    names = [o[0] for o in out]
    dup = sorted({n for n in names if names.count(n) > 1} | (set(names) & _nested_names(cls)))
    if dup:
        raise TypeError(f"{cls.__name__}: names used twice (flags or nested configs): {dup}")
    return out


def _nested_names(cls) -> set:
    """Field names of ``cls`` and its nested configs that hold a nested config."""
    names = set()
    for f in dataclasses.fields(cls):
        tp = _base(_hints(cls)[f.name])
        if _is_config(tp):
            names |= {f.name} | _nested_names(tp)
    return names


def _default_instance(cls):
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            values[f.name] = None
    return cls(**values)


def define_flags(cls, flag_values=None, exclude: Iterable[str] = (),
                 binary: Optional[str] = None, mark_required: bool = True) -> None:
    """Defines one absl flag per setting of config ``cls`` (see :func:`setting`).

    Args:
      cls: a config dataclass.
      flag_values: where to define them (default ``absl.flags.FLAGS``).
      exclude: field names that are not flags of this binary.
      binary: the binary's module name: its registered aliases (:func:`register_aliases`)
        are defined too.
      mark_required: False to parse only some of the flags (:func:`parse_given`).
    """
    from absl import flags
    # The flags belong to the binary that calls this (so its --help lists them), not here.
    flags.disclaim_key_flags()
    fv = flag_values if flag_values is not None else flags.FLAGS
    required = []
    for name, tp, default, meta in flag_fields(cls, exclude=exclude):
        help_text = meta.get("help") or name
        choices = list(meta.get("choices") or ())
        kw = {"flag_values": fv}
        if tp is bool:
            flags.DEFINE_bool(name, default, help_text, **kw)
        elif tp is int:
            flags.DEFINE_integer(name, default, help_text, **kw)
        elif tp is float:
            flags.DEFINE_float(name, default, help_text, **kw)
        elif tp is tuple and meta.get("repeated"):
            flags.DEFINE_multi_string(name, [str(v) for v in default or ()], help_text, **kw)
        elif tp is tuple:
            flags.DEFINE_list(name, None if default is None else [str(v) for v in default],
                              help_text + (f" One or more of {','.join(choices)}."
                                           if choices else ""), **kw)
        elif choices:
            flags.DEFINE_enum(name, default, choices, help_text, **kw)
        else:
            flags.DEFINE_string(name, default, help_text, **kw)
        if meta.get("required"):
            required.append(name)
    aliases = {**_LASTING.get(binary or "", {}), **_DEPRECATED.get(binary or "", {})}
    for old, new in aliases.items():
        if new in fv and old not in fv:
            flags.DEFINE_alias(old, new, flag_values=fv)
    for name in required if mark_required else ():
        flags.mark_flag_as_required(name, flag_values=fv)


def warn_deprecated(binary: str, flag_values=None, out=None) -> list:
    """Warns (stderr) about each deprecated spelling given on the command line; returns them."""
    from absl import flags
    fv = flag_values if flag_values is not None else flags.FLAGS
    used = [(old, new) for old, new in _DEPRECATED.get(binary, {}).items()
            if old in fv and fv[old].present]
    for old, new in used:
        print(f"warning: --{old} is deprecated and will be removed in the next release; "
              f"use --{new}", file=out or sys.stderr)
    return used


def _convert(name: str, tp, value, meta):
    if tp is tuple and value is not None:
        item = meta.get("item", str)
        try:
            value = tuple(item(v) for v in value)
        except ValueError as e:
            raise ValueError(f"--{name}={','.join(map(str, value))}: expected a list of "
                             f"{item.__name__}") from e
        choices = meta.get("choices") or ()
        bad = [v for v in value if choices and v not in choices]
        if bad:
            raise ValueError(f"--{name}={','.join(map(str, value))}: expected items from "
                             f"{','.join(choices)}")
    return value


def make(cls, values: Mapping[str, Any] = None, default=None, **kwargs):
    """Builds config ``cls`` from flat setting names (those of its flags), nested configs
    included; names not given keep their defaults.

    ``make(PretrainConfig, data_dir=d, model_dir=m, width=0.25, d_min=16)``

    Raises:
      TypeError: a name that is no setting of ``cls``.
    """
    flat = dict(values or {}, **kwargs)
    default = default if default is not None else _default_instance(cls)
    config, used = _build(cls, flat, default, top=True)
    unknown = sorted(set(flat) - used)
    if unknown:
        raise TypeError(f"{cls.__name__} has no settings {unknown}")
    return config


def _build(cls, flat: Mapping[str, Any], default, top: bool = False) -> tuple:
    """Nested configs take their flag settings from ``flat``; derived (non-flag) fields are
    set only at the top level (a run's ``seed`` is not its pair pipeline's)."""
    hints = _hints(cls)
    values, used = {}, set()
    for f in dataclasses.fields(cls):
        tp = _base(hints[f.name])
        settable = top or f.metadata.get("flag", True)
        if _is_config(tp) and f.name not in flat:
            values[f.name], inner = _build(tp, flat, getattr(default, f.name))
            used |= inner
        elif f.name in flat and settable:
            values[f.name] = _convert(f.name, tp, flat[f.name], f.metadata)
            used.add(f.name)
        else:
            values[f.name] = getattr(default, f.name)
    return cls(**values), used


def from_flags(cls, flag_values=None, exclude: Iterable[str] = ()):
    """Config ``cls`` from parsed flags defined by :func:`define_flags`, its declared ranges
    checked (:func:`check_ranges`): every binary builds its config here, first thing, so a
    value out of range stops it before anything is read or written.

    Raises:
      ValueError: ``--name=value: expected ...`` (exit status 2).
    """
    from absl import flags
    fv = flag_values if flag_values is not None else flags.FLAGS
    names = [n for n, *_ in flag_fields(cls, exclude=exclude)]
    config = make(cls, {n: fv[n].value for n in names if n in fv})
    check_ranges(config)
    return config


def parse_given(cls, args: Sequence[str], exclude: Iterable[str] = (),
                binary: Optional[str] = None) -> dict:
    """``{name: value}`` of the settings of config ``cls`` that ``args`` (``--name=value``
    strings, as on a command line) give, converted and checked as the binary would, in the
    order given: the overrides of a config (:func:`make` applies them).

    Raises:
      ValueError: an unknown flag, a value that does not parse or is outside its declared
        range (naming the flag).
    """
    from absl import flags
    fv = flags.FlagValues()
    define_flags(cls, fv, exclude, binary=binary, mark_required=False)
    try:
        fv(["overrides", *args])
    except flags.Error as e:
        raise ValueError(str(e)) from None
    if binary:
        warn_deprecated(binary, fv)
    fields = {n: (tp, meta) for n, tp, _, meta in flag_fields(cls, exclude=exclude)}
    given = {n: _convert(n, fields[n][0], fv[n].value, fields[n][1])
             for n in fields if fv[n].present}

    # The order given (a bare boolean may read --noname); an alias's target goes last.
    order = []
    for arg in args:
        name = arg.lstrip("-").split("=", 1)[0]
        order.append(name[2:] if "=" not in arg and name not in given and name.startswith("no")
                     else name)
    given = dict(sorted(given.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order
                        else len(order)))
    check_ranges(make(cls, given))
    return given


def flat_values(config, exclude: Iterable[str] = ()) -> dict:
    """``{name: value}`` of every flag of ``config`` (nested configs flattened): the
    inverse of :func:`make`."""
    return {name: value for name, _, value, _ in
            flag_fields(type(config), default=config, exclude=exclude)}


def flag_args(values: Mapping[str, Any]) -> list:
    """Command-line flags of ``{name: value}``: ``--name=value`` (lists comma-separated),
    ``--name`` / ``--noname`` for booleans; what :func:`parse_given` reads back."""
    out = []
    for name, value in values.items():
        if isinstance(value, bool):
            out.append(f"--{name}" if value else f"--no{name}")
        elif isinstance(value, (tuple, list)):
            out.append(f"--{name}={','.join(str(v) for v in value)}")
        else:
            out.append(f"--{name}={value}")
    return out
