"""The shape of the package a contributor meets: small files, dependencies in plain sight."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src" / "skiplab"
MAX_LINES = 400


def test_no_source_file_is_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these (at most {MAX_LINES} lines each): {long}"


def test_skiplab_modules_are_imported_at_the_top_not_inside_functions():
    """An import of another skiplab module inside a function hides a dependency; the few
    that must stay lazy say why on the line above, with a comment containing 'lazy:'."""
    hidden = []
    for path in SRC.rglob("*.py"):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, ast.ImportFrom) and (inner.level > 0 or (
                        inner.module or "").startswith("skiplab")):
                    context = " ".join(lines[max(0, inner.lineno - 3):inner.lineno])
                    if "lazy:" not in context:
                        hidden.append(f"{path.relative_to(SRC)}:{inner.lineno}")
    assert not hidden, f"move these imports to the top of their module: {hidden}"
