"""Streamlit's "magic" writes the value of every bare expression in a page script, functions
included: `x.append(1) if not x else None` on its own line puts a `None` on the page. Every
page script may hold only calls, docstrings, yields and awaits as expression statements."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = [ROOT / "app.py", *sorted((ROOT / "app_pages").glob("*.py"))]


def stray_expressions(source: str) -> list[int]:
    tree = ast.parse(source)
    docstrings = {id(body[0]) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                  for body in [node.body] if body and isinstance(body[0], ast.Expr)
                  and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)}
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Expr) and id(node) not in docstrings
            and not isinstance(node.value, (ast.Call, ast.Yield, ast.YieldFrom, ast.Await))]


def test_the_check_finds_a_stray_expression():
    assert stray_expressions('"""doc"""\ndef f(x):\n    """doc"""\n    x.append(1) if not x else None\n    x\n    f(x)\n') == [4, 5]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_page_scripts_print_nothing_by_accident(script):
    assert len(SCRIPTS) >= 8
    assert stray_expressions(script.read_text()) == [], script
