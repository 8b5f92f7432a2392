"""YAML loading that remembers where every value came from, within fixed limits.

PyYAML's composer gives each node its position; we build plain Python data from the
node tree and keep a map from document path to line, so every later check can say
``file:line: path: message``. Duplicate keys, which PyYAML silently merges, are errors.

Every file the lab reads from people (topologies, scenarios, the topologies they name) comes
through here, so the limits below hold for all of them. They are checked on the parser's
event stream before a single node is built: an alias bomb ("billion laughs") is a few hundred
bytes that PyYAML would expand into gigabytes, and deep nesting would exhaust Python's stack.
Documented in docs/topology.md, "Limits".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.events import (AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent,
                         StreamEndEvent)

from lab.core.errors import InputError, Problem, format_path

Path_ = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024     # a hand-written topology is 1-5 kB, a generated 3,000-host one 260 kB
MAX_DEPTH = 64              # lists and mappings inside each other; real files nest about 6 deep
MAX_NODES = 100_000         # keys, values and items once aliases are expanded

# libyaml (PyYAML's C extension) parses about 20 times faster than pure Python: with it, a file
# at the limits above is read in well under a second.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_POSITION_IN_BYTES = _Loader is not yaml.SafeLoader     # libyaml counts a ReaderError's position in bytes

# Tags that only spell out what YAML would infer anyway (!!str 8080, dates, merge keys '<<').
_PLAIN_TAGS = {"tag:yaml.org,2002:" + t for t in ("null", "bool", "int", "float", "str", "timestamp",
                                                   "merge", "seq", "map")}
_SIZE_HINT = "topologies and scenarios are a few kilobytes: is this the right file?"


class Located:
    """Parsed data plus the line of each path in it."""

    def __init__(self, file: str, data: Any, lines: dict[Path_, int]):
        self.file = file
        self.data = data
        self.lines = lines

    def line(self, path: Path_) -> int | None:
        """The line of ``path`` or of its nearest ancestor present in the file."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path_, message: str, hint: str | None = None) -> Problem:
        return Problem(self.file, format_path(path), message, hint, self.line(path))


#: what an empty file is told it should hold, by default (a topology)
TOPOLOGY_SHAPE = "a topology is a mapping with name, nodes and links"


def load_yaml(path: str | Path, text: str | None = None, *, shape: str = TOPOLOGY_SHAPE) -> Located:
    """Read a YAML mapping from ``path``; raise InputError with every problem found.
    ``shape`` is the hint an empty file gets: what the file should hold."""
    name = str(path)
    if text is None:
        text = _read(path, name)
    else:
        data = text.encode("utf-8", "surrogatepass")
        if len(data) > MAX_BYTES:
            raise _too_large(name, data, len(data))
    _check_limits(name, text)
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        raise InputError([_yaml_problem(name, text, exc)])
    finally:
        loader.dispose()
    if root is None:
        raise InputError([Problem(name, "", "the file is empty", shape, 1)])
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []

    def tag_problem(node: yaml.Node, at: Path_) -> bool:
        if node.tag in _PLAIN_TAGS:
            return False
        tag = node.tag.replace("tag:yaml.org,2002:", "!!")
        what = "builds a Python object" if tag.startswith("!!python/") else "is not plain data"
        problems.append(Problem(name, format_path(at), f"YAML tag '{tag}' is not allowed: it {what}",
                                "icelab reads plain text, numbers, true/false, lists and mappings; "
                                "remove the tag and write the value itself", node.start_mark.line + 1))
        return True

    def walk(node: yaml.Node, at: Path_) -> Any:
        lines.setdefault(at, node.start_mark.line + 1)
        if tag_problem(node, at):
            return None
        if isinstance(node, yaml.MappingNode):
            try:
                loader.flatten_mapping(node)  # YAML merge keys (<<)
            except yaml.YAMLError as exc:
                problems.append(Problem(name, format_path(at), f"bad merge key '<<': {_problem_text(exc)}",
                                        "'<<' takes an alias of a mapping (<<: *defaults) or a list of them",
                                        node.start_mark.line + 1))
                return None
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                if tag_problem(knode, at):
                    continue
                key = loader.construct_object(knode, deep=True) if isinstance(knode, yaml.ScalarNode) else None
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    if isinstance(knode, yaml.ScalarNode):
                        what = f"key {key!r} is not a name" if key is not None else "a key is empty"
                    else:
                        what = f"a key cannot be a {'mapping' if isinstance(knode, yaml.MappingNode) else 'list'}"
                    problems.append(Problem(name, format_path(at), what, "keys are plain words",
                                            knode.start_mark.line + 1))
                    continue
                key_s = str(key) if not isinstance(key, str) else key
                if key_s in out:
                    problems.append(Problem(name, format_path(at + (key_s,)), f"duplicate key '{key_s}'",
                                            "each key may appear once; the later one would silently win",
                                            knode.start_mark.line + 1))
                    continue
                out[key_s] = walk(vnode, at + (key_s,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(item, at + (i,)) for i, item in enumerate(node.value)]
        try:
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            hint = (f"YAML reads {node.value} as a date; put it in quotes if it is text"
                    if node.tag == "tag:yaml.org,2002:timestamp" else None)
            problems.append(Problem(name, format_path(at), f"bad value: {_problem_text(exc)}", hint,
                                    node.start_mark.line + 1))
            return None

    data = walk(root, ())
    if problems:
        raise InputError(problems)
    return Located(name, data, lines)


def _problem_text(exc: Exception) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        return exc.problem
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.split("; use sys.")[0]     # Python's advice on its int-size limit is not the author's to follow


def _read(path: str | Path, name: str) -> str:
    """The file's text, read no further than the size limit."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
            if len(data) > MAX_BYTES:
                raise _too_large(name, data, max(os.fstat(f.fileno()).st_size, len(data)))
    except FileNotFoundError:
        raise InputError([Problem(name, "", "file not found",
                                  "check the path; topologies live in topologies/")])
    except OSError as exc:
        raise InputError([Problem(name, "", f"cannot read the file: {exc}")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError([Problem(name, "", f"cannot read the file: {exc}", "save it as UTF-8 text",
                                  data.count(b"\n", 0, exc.start) + 1)])
    # the newlines Python's text mode would give (YAML reads \r\n as one line break anyway)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _too_large(name: str, data: bytes, size: int) -> InputError:
    line = data.count(b"\n", 0, MAX_BYTES) + 1
    return InputError([Problem(name, "", f"the file is too large ({_size(size)}); icelab reads at most "
                                         f"{_size(MAX_BYTES)}, a limit reached on this line",
                               _SIZE_HINT, line)])


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n / 1024:.0f} kB" if n >= 1024 else f"{n} bytes"


def _check_limits(name: str, text: str) -> None:
    """Depth, expanded size and self-containing aliases, from the event stream alone: the
    size of each anchored value is counted once and added at every alias that repeats it,
    so a file that would expand to gigabytes is refused after reading its few lines."""
    open_: list[list] = []                  # collections not yet closed: [anchor, nodes, height]
    anchors: dict[str, tuple[int, int]] = {}    # closed anchors: nodes, height (nesting below)
    total = 0
    loader = None
    try:
        loader = _Loader(text)
        while True:
            ev = loader.get_event()
            if ev is None or isinstance(ev, StreamEndEvent):
                return
            line = ev.start_mark.line + 1
            if isinstance(ev, CollectionStartEvent):
                open_.append([ev.anchor, 1, 0])
                total += 1
                if len(open_) > MAX_DEPTH:
                    raise _limit(name, line, _DEPTH_MESSAGE, _DEPTH_HINT)
                if total > MAX_NODES:
                    raise _limit(name, line, f"the document has more than {MAX_NODES:,} values", _SIZE_HINT)
                continue
            if isinstance(ev, CollectionEndEvent):
                anchor, count, height = open_.pop()
                size, height = count, height + 1
                if anchor is not None:
                    anchors[anchor] = (size, height)
            elif isinstance(ev, AliasEvent):
                if any(o[0] == ev.anchor for o in open_):
                    raise _limit(name, line, f"alias '*{ev.anchor}' is inside the value it names",
                                 "a value cannot contain itself; alias a value whose anchor (&name) "
                                 "is closed before the alias")
                size, height = anchors.get(ev.anchor, (0, 0))   # an undefined one: the composer says so
                total += size
                if len(open_) + height > MAX_DEPTH:
                    raise _limit(name, line, f"alias '*{ev.anchor}' nests lists and mappings more than "
                                             f"{MAX_DEPTH} deep", _ALIAS_HINT)
                if total > MAX_NODES:
                    raise _limit(name, line, f"alias '*{ev.anchor}' repeats {size:,} values, which takes the "
                                             f"document past {MAX_NODES:,} once aliases are expanded",
                                 _ALIAS_HINT)
            elif isinstance(ev, ScalarEvent):
                size, height = 1, 0
                total += 1
                if ev.anchor is not None:
                    anchors[ev.anchor] = (1, 0)
                if total > MAX_NODES:
                    raise _limit(name, line, f"the document has more than {MAX_NODES:,} values", _SIZE_HINT)
            else:
                continue
            if open_:
                open_[-1][1] += size
                open_[-1][2] = max(open_[-1][2], height)
    except yaml.YAMLError as exc:
        raise InputError([_yaml_problem(name, text, exc)])
    finally:
        if loader is not None:
            loader.dispose()


_PURE_REREAD = 16 * 1024       # bytes the pure-Python parser re-reads in a fraction of a second


def _pure_wording(text: str, exc: yaml.MarkedYAMLError) -> yaml.MarkedYAMLError:
    """The pure-Python parser's account of a syntax error that libyaml found: it says what it
    met as well as what it expected ("expected ',' or '}', but got ':'"). It re-reads the file
    up to the line after the error, when that part is small enough to re-read quickly."""
    if _Loader is yaml.SafeLoader or exc.problem_mark is None:
        return exc
    end = 0
    for _ in range(exc.problem_mark.line + 2):
        end = text.find("\n", end) + 1
        if end == 0:
            end = len(text)
            break
    if end > _PURE_REREAD:
        return exc
    loader = None
    try:
        loader = yaml.SafeLoader(text[:end])
        loader.get_single_node()
    except yaml.MarkedYAMLError as pure:
        if pure.problem_mark is not None and pure.problem_mark.line == exc.problem_mark.line:
            return pure
    except (yaml.YAMLError, RecursionError):
        pass
    finally:
        if loader is not None:
            loader.dispose()
    return exc


_DEPTH_MESSAGE = f"lists and mappings are nested more than {MAX_DEPTH} deep"
_DEPTH_HINT = ("topologies and scenarios nest a few levels; look for brackets that are never closed, "
               "or indentation that runs away")
_ALIAS_HINT = ("an alias (*name) repeats its anchor's value (&name), and aliases of aliases multiply "
               "('billion laughs'); write the values out, or share smaller pieces")


def _limit(name: str, line: int, message: str, hint: str) -> InputError:
    return InputError([Problem(name, "", message, hint, line)])


def _yaml_problem(name: str, text: str, exc: yaml.YAMLError) -> Problem:
    if isinstance(exc, yaml.reader.ReaderError):
        before = text.encode("utf-8", "surrogatepass")[:exc.position].decode("utf-8", "replace") \
            if _POSITION_IN_BYTES else text[:exc.position]
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        char = "a NUL byte" if exc.character == 0 else f"control character #x{exc.character:04x}"
        return Problem(name, "", f"the file holds {char} (column {column}), which YAML does not allow",
                       "topologies and scenarios are plain UTF-8 text: is this the right file? "
                       "If so, delete the character", line)
    if isinstance(exc, yaml.MarkedYAMLError):
        if "maximum nesting depth" in str(exc.problem):
            # libyaml's own cap (1,000 open brackets), met while it scans ahead for a key
            mark = exc.problem_mark or exc.context_mark
            return Problem(name, "", _DEPTH_MESSAGE, _DEPTH_HINT, mark.line + 1 if mark else None)
        exc = _pure_wording(text, exc)
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            ctx = exc.context
            if exc.context_mark is not None and exc.problem_mark is not None \
                    and exc.context_mark.line != exc.problem_mark.line:
                ctx += f" that starts on line {exc.context_mark.line + 1}"
            msg += f" ({ctx})"
        return Problem(name, "", msg, "check indentation and quoting near this line", line)
    return Problem(name, "", f"YAML error: {exc}")
