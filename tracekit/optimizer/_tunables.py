"""The settings of an editable Python file that the search proposer may change.

A tunable is a module-level UPPERCASE constant assigned a literal number, bool or string. When the
file has a block between `# --- tunable ---` and `# --- end tunable ---`, only the constants inside
count; otherwise every module-level UPPERCASE literal does (except names containing SEED: changing
a seed only samples noise). A string is categorical when its trailing comment lists the quoted
alternatives, e.g. `ACTIVATION = "gelu"  # "gelu", "relu" or "silu"`.

    tunables = find_tunables(source)                  # [Tunable(name="LEARNING_RATE", value=0.001, ...)]
    new = set_values(source, {"LEARNING_RATE": 0.002})  # only that literal changes; comments stay
    changed_values(source, new)                       # {"LEARNING_RATE": (0.001, 0.002)}
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from dataclasses import dataclass

START_MARKER = re.compile(r"^\s*#\s*-+\s*tunable\s*-+\s*$", re.IGNORECASE)
END_MARKER = re.compile(r"^\s*#\s*-+\s*end\s+tunable\s*-+\s*$", re.IGNORECASE)
_UPPER = re.compile(r"^[A-Z][A-Z0-9_]*$")
_QUOTED = re.compile(r"""["']([^"'\n]{1,64})["']""")

Value = int | float | bool | str


@dataclass(frozen=True)
class Tunable:
    name: str
    value: Value
    kind: str  # int | float | bool | choice
    line: int  # 1-based line of the assignment
    col: int  # where the value's text starts on that line (0-based)
    end_col: int
    choices: tuple[str, ...] = ()
    comment: str = ""


def _literal(node: ast.expr) -> Value | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, bool, str)):
        return node.value
    if (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool)):
        return -node.operand.value
    return None


def _comments(source: str) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                out[tok.start[0]] = tok.string
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return out


def marked_region(lines: list[str]) -> tuple[int, int] | None:
    """1-based inclusive line range between the markers, or None when the file has none."""
    start = None
    for i, line in enumerate(lines, 1):
        if start is None and START_MARKER.match(line):
            start = i
        elif start is not None and END_MARKER.match(line):
            return start + 1, i - 1
    return None


def find_tunables(source: str) -> list[Tunable]:
    """The tunables of `source` in file order ([] when it does not parse)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    lines = source.splitlines()
    region = marked_region(lines)
    comments = _comments(source)
    out: list[Tunable] = []
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value_node = node.target.id, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value_node = node.targets[0].id, node.value
        else:
            continue
        if not _UPPER.match(name) or value_node.lineno != value_node.end_lineno:
            continue
        if region is not None and not (region[0] <= node.lineno <= region[1]):
            continue
        if region is None and "SEED" in name:
            continue
        value = _literal(value_node)
        if value is None:
            continue
        comment = comments.get(node.lineno, "")
        choices: tuple[str, ...] = ()
        if isinstance(value, bool):
            kind = "bool"
        elif isinstance(value, int):
            kind = "int"
        elif isinstance(value, float):
            kind = "float"
        else:
            found = tuple(dict.fromkeys(_QUOTED.findall(comment)))
            if value not in found or len(found) < 2:
                continue  # a string without listed alternatives is not a setting we can change
            kind, choices = "choice", found
        out.append(Tunable(name, value, kind, node.lineno, value_node.col_offset, value_node.end_col_offset or 0,
                           choices, comment))
    return out


def format_value(value: Value, like: str = "") -> str:
    """Source text for `value`, in the style of the literal it replaces (`like`)."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if "e" in like.lower() or (value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5)):
            mantissa, exp = f"{value:.3e}".split("e")
            mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exp)}"
        text = f"{value:.6g}"
        return text if any(c in text for c in ".e") else text + ".0"
    quote = "'" if like.startswith("'") else '"'
    return f"{quote}{value}{quote}"


def set_values(source: str, values: dict[str, Value]) -> str:
    """`source` with the named tunables' literals replaced (KeyError for a name that is not one)."""
    found = {t.name: t for t in find_tunables(source)}
    lines = source.splitlines(keepends=True)
    for name, value in values.items():
        t = found[name]
        line = lines[t.line - 1]
        # ast columns are UTF-8 byte offsets; convert for lines with non-ASCII text before the value
        raw = line.encode()
        old = raw[t.col:t.end_col].decode()
        new = format_value(value, old)
        lines[t.line - 1] = (raw[: t.col] + new.encode() + raw[t.end_col:]).decode()
    return "".join(lines)


def values(source: str) -> dict[str, Value]:
    return {t.name: t.value for t in find_tunables(source)}


def changed_values(old: str, new: str) -> dict[str, tuple[Value, Value]]:
    """Tunables whose value differs between two versions of a file (both must define them)."""
    a, b = values(old), values(new)
    return {k: (a[k], b[k]) for k in a if k in b and a[k] != b[k]}


def _assignment(line: str) -> tuple[str, Value] | None:
    try:
        tree = ast.parse(line.strip())
    except SyntaxError:
        return None
    if len(tree.body) != 1:
        return None
    node = tree.body[0]
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        name, value_node = node.targets[0].id, node.value
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        name, value_node = node.target.id, node.value
    else:
        return None
    value = _literal(value_node)
    if not _UPPER.match(name) or value is None:
        return None
    return name, value


def changes_from_diff(diff: str) -> dict[str, tuple[Value, Value]]:
    """UPPERCASE constants a unified diff changes, {name: (old, new)}, read from its -/+ lines."""
    old: dict[str, Value] = {}
    new: dict[str, Value] = {}
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("-"):
            a = _assignment(line[1:])
            if a:
                old[a[0]] = a[1]
        elif line.startswith("+"):
            a = _assignment(line[1:])
            if a:
                new[a[0]] = a[1]
    return {k: (old[k], new[k]) for k in old if k in new and old[k] != new[k]}
