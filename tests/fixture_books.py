"""Small runbooks for the unattended-operation tests: one shows a named table built from its
parameters, one fails with the exception its parameter names."""
from __future__ import annotations

from pathlib import Path

import nbformat

TABLE_PARAMS = '''rows: list = []  # rows of the admins table: [subject, binding, size]
password: str = ""  # a secret-named parameter (must never be recorded in clear)
marker: str = ""  # file the body cell appends to, once per execution'''

TABLE_BODY = '''import pathlib
import pandas as pd
from kubebook.show import named
if marker:
    with open(marker, "a") as f:
        f.write("ran\\n")
admins = named(pd.DataFrame(rows, columns=["subject", "binding", "size"]), "admins", key=["subject"], volatile=[])
admins'''

FAIL_PARAMS = '''error: str = "ConnectionRefusedError"  # exception class to raise
marker: str = ""  # file the body cell appends to, once per execution'''

FAIL_BODY = '''import builtins
if marker:
    with open(marker, "a") as f:
        f.write("ran\\n")
from kubebook.errors import ConfirmationRequired
kind = {"ConfirmationRequired": ConfirmationRequired}.get(error) or getattr(builtins, error)
raise kind("[Errno 111] Connection refused" if "Connection" in error else "confirm='x' does not name the node")'''


def notebook(path: Path, params: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Fixture\n\nA fixture runbook."), cell, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["kubebook"] = {"permissions": []}   # touches no API: schedulable
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def make(root: Path) -> Path:
    notebook(root / "demo" / "table.ipynb", TABLE_PARAMS, TABLE_BODY)
    notebook(root / "demo" / "fail.ipynb", FAIL_PARAMS, FAIL_BODY)
    return root
