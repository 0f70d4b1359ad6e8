"""The runner: parameter validation happens before any kernel starts; failures exit non-zero."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kubebook import runner
from kubebook.errors import ParameterError, RunbookFailed

PARAMS = '''namespace: str = "luffy"  # namespace to act on
replicas: int = 3  # how many Pods
ratio: float = 0.5  # a fraction
force: bool = False  # act even if unsafe
nodes: list = []  # node names
context: "Optional[str]" = None  # kubeconfig context
marker: str = ""  # file the body cell writes
snapshot: str = None  # required: snapshot file'''


def _notebook(path: Path, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell(PARAMS)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Test book\n\nA fixture runbook."), cell,
                nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def books(tmp_path):
    root = tmp_path / "runbooks"
    body = ("import pathlib\nif marker: pathlib.Path(marker).write_text(repr((namespace, replicas, ratio, "
            "force, nodes, context, snapshot)))")
    _notebook(root / "demo" / "good.ipynb", body)
    _notebook(root / "demo" / "broken.ipynb", "raise RuntimeError('deliberately broken')")
    return root


def test_parameters_are_read_with_types_defaults_and_help(books):
    book = runner.find("demo/good", books)
    p = book.parameters
    assert (p["replicas"].type, p["replicas"].default, p["replicas"].help) == ("int", 3, "how many Pods")
    assert p["context"].optional and not p["context"].required
    assert p["snapshot"].required
    assert book.purpose == "A fixture runbook."


@pytest.mark.parametrize("values, message", [
    ({"nope": "1", "snapshot": "s"}, "unknown parameter 'nope'"),
    ({"replicas": "three", "snapshot": "s"}, "'three' is not a valid int"),
    ({"replicas": "2.5", "snapshot": "s"}, "not a valid int"),
    ({"force": "maybe", "snapshot": "s"}, "not a valid bool"),
    ({"ratio": "x", "snapshot": "s"}, "not a valid float"),
    ({}, "missing required parameter 'snapshot'"),
])
def test_bad_input_is_rejected_with_one_line(books, values, message):
    book = runner.find("demo/good", books)
    with pytest.raises(ParameterError, match=message) as info:
        book.validate(values)
    assert "\n" not in str(info.value)


def test_values_are_converted_to_declared_types(books):
    book = runner.find("demo/good", books)
    got = book.validate({"replicas": "5", "ratio": "0.25", "force": "yes", "nodes": "a,b",
                         "context": "kind", "snapshot": "s.db"})
    assert got == {"replicas": 5, "ratio": 0.25, "force": True, "nodes": ["a", "b"], "context": "kind",
                   "snapshot": "s.db"}


def test_run_writes_notebook_and_html_and_passes_parameters(books, tmp_path):
    marker = tmp_path / "ran.txt"
    result = runner.run(runner.find("demo/good", books), {"marker": str(marker), "snapshot": "s.db",
                                                          "replicas": "7"},
                        output_dir=tmp_path / "out", progress=False)
    assert result.notebook.is_file() and result.html.is_file()
    assert marker.read_text() == repr(("luffy", 7, 0.5, False, [], None, "s.db"))
    assert result.notebook.name.startswith("demo-good-")


def test_failed_cell_raises_with_output_path(books, tmp_path):
    with pytest.raises(RunbookFailed, match="deliberately broken") as info:
        runner.run(runner.find("demo/broken", books), {"snapshot": "s"}, output_dir=tmp_path, progress=False)
    out = Path(info.value.output_path)
    assert out.is_file() and out.with_suffix(".html").is_file()


def _cli(*args, env_root):
    return subprocess.run([sys.executable, "-m", "kubebook.cli", *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "KUBEBOOK_RUNBOOKS": str(env_root)})


@pytest.mark.parametrize("extra", [["-p", "nope", "1"], ["-p", "replicas", "many"], []])
def test_cli_rejects_bad_parameters_with_exit_2_before_any_cell(books, tmp_path, extra):
    marker = tmp_path / "ran.txt"
    snapshot = [] if extra == [] else ["-p", "snapshot", "s"]
    proc = _cli("run", "demo/good", "-p", "marker", str(marker), *snapshot, *extra,
                "--output-dir", str(tmp_path / "out"), env_root=books)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_cli_exit_code_is_nonzero_when_a_cell_fails(books, tmp_path):
    proc = _cli("run", "demo/broken", "-p", "snapshot", "s", "--output-dir", str(tmp_path), "--no-progress",
                env_root=books)
    assert proc.returncode == 1
    assert "deliberately broken" in proc.stderr


def test_cli_list_json_describes_parameters(books):
    proc = _cli("list", "--json", env_root=books)
    listed = {b["runbook"]: b for b in json.loads(proc.stdout)}
    names = [p["name"] for p in listed["demo/good"]["parameters"]]
    assert names[:3] == ["namespace", "replicas", "ratio"]


def test_every_shipped_runbook_has_documented_typed_parameters():
    books = runner.discover()
    assert books, "no runbooks found"
    for book in books:
        assert book.purpose, book.id
        for p in book.parameters.values():
            assert p.help, f"{book.id}: parameter {p.name} has no help"
            assert p.type != "None", f"{book.id}: parameter {p.name} has no type"
        nb = json.loads(book.path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
        declared = [line.split(":")[0] for line in "".join(cell["source"]).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
        assert declared == list(book.parameters), f"{book.id}: a parameter line papermill cannot parse"
        for cell in nb["cells"]:
            assert not cell.get("outputs") and not cell.get("execution_count"), f"{book.id} has outputs"
