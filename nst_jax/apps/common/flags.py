"""Command-line flags made from :class:`nst_jax.config.Config`, and an argparse that errs in one line.

Why a small generator over argparse rather than a dataclass CLI library (tyro,
simple-parsing): the flags need three things those make awkward — every error
on one ``error:`` line (they print usage blocks or boxed tracebacks), the
sweep's list syntax for the same fields (``--seeds 0,1,2``,
``--style-layers conv1_1,conv1_1+conv2_1``, ``--style-layer-weights "1,0;0,1"``),
and negative numbers as values (``--ratios -1e-3`` is a value, not a flag).
Each field's metadata (help, group, kind, whether a sweep may vary it) is all
the generator reads, so a field added to ``Config`` appears in every tool.

Single values (``stylize.py``): ``--size 384``, ``--style-layers conv1_1,conv2_1``.
Sweep axes (``sweep.py``), one list of points per sweepable field:

- numbers, seeds and inits: comma-separated, the flag in the plural
  (``--ratios 1e-4,1e-3``, ``--seeds 0,1``, ``--inits noise,content``);
- layer sets: comma-separated points, ``+`` joining the layers of one point
  (``--content-layers conv2_2,conv2_2+conv4_2``);
- weight vectors: ``;``-separated points, each comma-separated as in
  ``stylize.py`` (``--style-layer-weights "1,0,0,0,0;0.2,0.2,0.2,0.2,0.2"``);
- style distances: ``;``-separated points, each a distance or a mix as in ``stylize.py``
  (``--style-losses "gram;sliced;gram:1,histogram:1"``).
"""
from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any, Callable, Mapping, Sequence

from nst_jax.config import ALIASES, FIELDS, GROUPS, Config, ConfigError
from nst_jax.errors import NSTError
from nst_jax.files import find_clash, name_too_long


class UsageError(NSTError):
    """A flag the parser could not read (unknown, missing value, not a number)."""


# A value that starts with '-' but cannot be a flag here: no flag begins with a digit or '.'.
_NEGATIVE_VALUE = re.compile(r"^-[0-9.][0-9.eE+\-,;]*$")


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """``['--ratios', '-1e-3']`` -> ``['--ratios=-1e-3']``: argparse reads ``-1e-3``
    (scientific notation) as a flag, so a value like it is attached to its flag."""
    out: list[str] = []
    for token in argv:
        if (_NEGATIVE_VALUE.match(token) and out and out[-1].startswith("--")
                and "=" not in out[-1]):
            out[-1] = f"{out[-1]}={token}"
        else:
            out.append(token)
    return out


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors are one-line :class:`UsageError` (shown by the runner as
    ``error: ...``), with negative numbers taken as values and no abbreviated flags."""

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(**kwargs)

    def error(self, message: str):  # argparse's hook; it must not return
        raise UsageError(f"{' '.join(message.split())} (see --help)")

    def parse_args(self, args: Sequence[str] | None = None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_args(join_negative_values(args), namespace)


# --- parsing one value, by kind -----------------------------------------------------------


def _whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def _real(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def _items(text: str, sep: str = ",") -> list[str]:
    return [part.strip() for part in text.split(sep) if part.strip()]


def _names(text: str) -> tuple[str, ...]:
    return tuple(_items(text))


def _reals(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in _items(text))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}") from None


def file_path(text: str) -> str:
    """A file or folder name, refused here (so before any work, naming the flag) when it
    is empty or too long for the file system (:func:`nst_jax.files.name_too_long`): the
    type of every path flag, ``Config``'s and the tools' own (``--output``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file name, got an empty string")
    problem = name_too_long(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{problem}; shorten it")
    return text


def _tile(text: str) -> int | str:
    """``auto`` or a whole number (checked by the config)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of px or auto, got {text!r}"
                                         ) from None


def _paths(text: str) -> tuple[str, ...]:
    names = tuple(_items(text))
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated file names, got {text!r}")
    return tuple(file_path(name) for name in names)


# How --help shows a value of each kind.
METAVARS = {"int": "N", "float": "X", "path": "FILE", "paths": "FILE[,FILE...]", "layers": "L1,L2",
            "floats": "W1,W2"}

SINGLE: dict[str, Callable[[str], Any]] = {
    "int": _whole, "float": _real, "path": file_path, "paths": _paths, "choice": str,
    "layers": _names, "floats": _reals, "tile": _tile, "mix": str,
}


def _axis(kind: str) -> Callable[[str], tuple]:
    """The parser of a sweep axis's list of values."""

    def parse(text: str) -> tuple:
        if kind == "layers":
            points = tuple(tuple(_items(item, "+")) for item in _items(text))
        elif kind == "floats":
            points = tuple(_reals(item) for item in _items(text, ";"))
        elif kind == "mix":  # gram;sliced;gram:1,histogram:1
            points = tuple(_items(text, ";"))
        else:
            points = tuple(SINGLE[kind](item) for item in _items(text))
        if not points:
            raise argparse.ArgumentTypeError(f"got no values in {text!r}")
        return points

    return parse


class _AxisAction(argparse.Action):
    """Stores an axis's values and remembers the order the axes were given in: the
    grid is their product in that order (the last one varies fastest, and makes the
    contact sheet's columns)."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, values)
        order = [name for name in getattr(namespace, "axis_order", []) if name != self.dest]
        namespace.axis_order = order + [self.dest]


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def axis_flag(name: str, kind: str) -> str:
    """``seed`` -> ``--seeds``, ``style_loss`` -> ``--style-losses``; fields whose values
    are lists keep their own name."""
    if kind in ("layers", "floats"):
        return _flag(name)
    return _flag(name) + ("es" if name.endswith("s") else "s")


def _default_text(value: Any, shown: str | None) -> str:
    if shown is not None:
        return shown
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclasses.dataclass
class ConfigFlags:
    """The flags of some of :class:`Config`'s fields, added to ``parser``.

    Args:
      parser: an :class:`ArgumentParser`.
      fields: the fields to offer (default: all, plus the ``ratio`` alias).
      axes: offer sweepable fields as sweep axes (lists of points) instead of single values.
      defaults: this tool's own defaults, where they differ from ``Config``'s
        (the sweep runs smaller images); shown in ``--help``.
    """

    parser: ArgumentParser
    fields: Sequence[str] | None = None
    axes: bool = False
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        names = list(self.fields) if self.fields is not None else list(FIELDS) + list(ALIASES)
        self.flags: dict[str, str] = {}  # field -> the flag that sets it
        self.swept: list[str] = []
        groups = {key: self.parser.add_argument_group(title) for key, title in GROUPS.items()}
        if self.axes:
            groups["axes"] = self.parser.add_argument_group(
                "sweep axes (each takes a list of values; the grid is their product)")
        base = Config().replace(**self.defaults)
        for name in names:
            if name in ALIASES:
                alias = ALIASES[name]
                meta = dict(help=alias.help, group="loss", kind=alias.kind, sweep=alias.sweep,
                            choices=None, metavar=None, shown_default="not set")
                default_text = "not set"
            else:
                meta = FIELDS[name].metadata
                default_text = _default_text(getattr(base, name), meta["shown_default"]
                                             if name not in self.defaults else None)
            as_axis = self.axes and meta["sweep"]
            group = groups["axes" if as_axis else meta["group"]]
            kind = meta["kind"]
            if as_axis:
                flag = axis_flag(name, kind)
                syntax = {"layers": "comma-separated points, '+' joins the layers of one point",
                          "floats": "';'-separated points, each comma-separated",
                          "mix": "';'-separated points, each a distance or a mix"}.get(
                              kind, "comma-separated")
                group.add_argument(flag, dest=name, type=_axis(kind), default=None,
                                   metavar="VALUES", action=_AxisAction,
                                   help=f"{meta['help']}: {syntax} (default: {default_text})")
                self.swept.append(name)
            elif kind == "bool":
                flag = _flag(name)
                group.add_argument(flag, dest=name, action="store_true", default=None,
                                   help=meta["help"])
            else:
                flag = _flag(name)
                group.add_argument(flag, dest=name, type=SINGLE[kind], default=None,
                                   choices=meta["choices"],
                                   metavar=meta["metavar"] or METAVARS.get(kind),
                                   help=f"{meta['help']} (default: {default_text})")
            self.flags[name] = flag

    def usage_error(self, error: ConfigError) -> UsageError:
        """A :class:`ConfigError` reworded with the flag the user typed."""
        flag = self.flags.get(error.field)
        if flag is None:  # set through an alias (ratio -> alpha)
            flag = next((self.flags[a] for a, alias in ALIASES.items()
                         if a in self.flags and error.field in alias.sets(0.0)), error.field)
        # Other fields the problem mentions are named by their flags too.
        problem = error.problem_naming(lambda name: self.flags.get(name, _flag(name)))
        return UsageError(f"{flag} {problem}")

    def given(self, args: argparse.Namespace) -> dict[str, Any]:
        """The single-value fields the user set (not the axes)."""
        return {name: getattr(args, name) for name in self.flags
                if name not in self.swept and getattr(args, name) is not None}

    def config(self, args: argparse.Namespace) -> Config:
        """The :class:`Config` of this tool's defaults and the flags given."""
        try:
            return Config().replace(**{**self.defaults, **self.given(args)})
        except ConfigError as e:
            raise self.usage_error(e) from None

    def input_files(self, config: Config) -> list[tuple[str, str]]:
        """``(flag, path)`` of every file a run of ``config`` reads: images, masks, an
        ``--init`` file and ``--weights`` (for :func:`refuse_replacing_inputs`)."""
        files = [("content", config.content), *(("style", p) for p in config.style),
                 *(("content_masks", p) for p in config.content_masks or ()),
                 *(("style_masks", p) for p in config.style_masks or ())]
        if config.init_is_file:
            files.append(("init", config.init))
        if config.weights is not None:
            files.append(("weights", config.weights))
        return [(self.flags.get(name, _flag(name)), path) for name, path in files]

    def axis_values(self, args: argparse.Namespace) -> dict[str, tuple]:
        """``{field: values}`` of the sweep axes given, in the order they were given."""
        return {name: getattr(args, name) for name in getattr(args, "axis_order", [])}


def refuse_replacing_inputs(outputs, inputs: Sequence[tuple[str, str]], flag: str,
                            what: str = "the result") -> None:
    """A :class:`UsageError`, before any work, if writing one of ``outputs`` would replace
    one of ``inputs`` (``(flag, path)`` pairs, :meth:`ConfigFlags.input_files`): the same
    path once resolved, or the same file through a hard or symbolic link
    (:func:`nst_jax.files.find_clash`). ``flag`` is the flag that chose the outputs."""
    clash = find_clash(outputs, inputs)
    if clash is None:
        return
    output, label, given = clash
    same = "" if str(output) == str(given) else f" ({given}, the same file)"
    raise UsageError(f"{flag}: writing {what} to {output} would replace the "
                     f"{label} file{same}; choose another {flag}")


def figure_list(text: str, known: Sequence[str]) -> list[str]:
    """``--figures a,b``: the figures named, in ``known``'s order; :class:`UsageError`
    for none or an unknown one (used by paper_figures.py and control_figures.py)."""
    figures = [f.strip() for f in text.split(",") if f.strip()]
    unknown = sorted(set(figures) - set(known))
    if unknown or not figures:
        raise UsageError(f"--figures: unknown figure(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return [f for f in known if f in figures]


def parse_and_run(build_parser: Callable[[], tuple[ArgumentParser, ConfigFlags]],
                  run: Callable[[argparse.Namespace, ConfigFlags], int],
                  argv: Sequence[str] | None) -> int:
    """A tool's ``main``: parse ``argv`` with its parser and run it; a :class:`ConfigError`
    the run meets (a value checked only when used, e.g. ``--init`` naming no file) is
    reworded with the flag the user typed."""
    parser, flags = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args, flags)
    except ConfigError as e:
        raise flags.usage_error(e) from None
