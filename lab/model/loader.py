"""YAML loading that remembers where every value came from.

PyYAML's composer gives each node its position; we build plain Python data from the
node tree and keep a map from document path to line, so every later check can say
``file:line: path: message``. Duplicate keys, which PyYAML silently merges, are errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lab.core.errors import InputError, Problem, format_path

Path_ = tuple[str | int, ...]


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


def load_yaml(path: str | Path, text: str | None = None) -> Located:
    """Read a YAML mapping from ``path``; raise InputError with every problem found."""
    name = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError([Problem(name, "", "file not found",
                                      "check the path; topologies live in topologies/")])
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError([Problem(name, "", f"cannot read the file: {exc}")])
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        msg = f"YAML syntax error: {exc.problem or exc}"
        if exc.context:
            ctx = exc.context
            if exc.context_mark is not None and exc.problem_mark is not None \
                    and exc.context_mark.line != exc.problem_mark.line:
                ctx += f" that starts on line {exc.context_mark.line + 1}"
            msg += f" ({ctx})"
        raise InputError([Problem(name, "", msg, "check indentation and quoting near this line", line)])
    except yaml.YAMLError as exc:
        raise InputError([Problem(name, "", f"YAML error: {exc}")])
    finally:
        loader.dispose()
    if root is None:
        raise InputError([Problem(name, "", "the file is empty", "a topology is a mapping with name, nodes and links", 1)])
    lines: dict[Path_, int] = {}
    problems: list[Problem] = []

    def walk(node: yaml.Node, at: Path_) -> Any:
        lines.setdefault(at, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            loader.flatten_mapping(node)  # YAML merge keys (<<)
            out: dict[Any, Any] = {}
            for knode, vnode in node.value:
                key = loader.construct_object(knode, deep=True)
                if not isinstance(key, (str, int)) or isinstance(key, bool):
                    problems.append(Problem(name, format_path(at), f"key {key!r} is not a name",
                                            "keys are plain words", knode.start_mark.line + 1))
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
        except yaml.YAMLError as exc:
            problems.append(Problem(name, format_path(at), f"bad value: {exc}", None, node.start_mark.line + 1))
            return None

    data = walk(root, ())
    if problems:
        raise InputError(problems)
    return Located(name, data, lines)
