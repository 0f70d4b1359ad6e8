"""`make demo`: start a lab, run every runbook on it headlessly, print what happened."""
from __future__ import annotations

import sys

import pandas as pd

from . import lab as labs, runner
from .errors import RunbookFailed


def run_all(lab: labs.Lab, output_dir: str = "runs") -> pd.DataFrame:
    """Run every runbook against ``lab``; one row per runbook (status, seconds, output)."""
    rows = []
    for book in runner.discover():
        print(f"[demo] running {book.id}", file=sys.stderr)
        try:
            result = runner.run(book, runner.lab_values(book, lab), output_dir=output_dir, progress=False)
            rows.append({"runbook": book.id, "status": result.status, "seconds": round(result.seconds, 1),
                         "notebook": str(result.notebook), "html": str(result.html)})
        except RunbookFailed as exc:
            rows.append({"runbook": book.id, "status": f"FAILED: {exc.ename}", "seconds": None,
                         "notebook": exc.output_path, "html": str(exc.output_path).replace(".ipynb", ".html")})
    return pd.DataFrame(rows, columns=["runbook", "status", "seconds", "notebook", "html"])


def run_demo(*, name: str = "demo", output_dir: str = "runs", keep: bool = False) -> bool:
    lab = labs.get(name)
    lab.up(nodes=3)
    try:
        table = run_all(lab, output_dir)
    finally:
        if not keep:
            lab.down()
    print(table.to_string(index=False))
    if keep:
        print("\n".join(f"export {k}={v}" for k, v in lab.env().items()))
    return bool(len(table)) and (table["status"] == "ok").all()
