"""The runner: parameter validation happens before any kernel starts; failures exit non-zero."""
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from kubebook import runner, safety
from kubebook.errors import ParameterError, RunbookFailed

PARAMS = '''from kubebook.parameters import *  # parameter types; values are checked before any other cell runs
namespace: Namespace = "kubebook-demo"  # namespace to act on
replicas: Count = 3  # how many Pods
ratio: Fraction = 0.5  # a fraction
force: bool = False  # act even if unsafe
nodes: NodeNames = []  # node names
context: str = ""  # kubeconfig context
marker: Path = ""  # file the body cell writes
password: Secret = ""  # a secret, passed out of band
snapshot: File = None  # required: snapshot file'''


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
            "force, nodes, context, snapshot, password)))\nprint('password is', password)")
    _notebook(root / "demo" / "good.ipynb", body)
    _notebook(root / "demo" / "broken.ipynb", "raise RuntimeError('deliberately broken')")
    return root


def test_parameters_are_read_with_types_defaults_and_help(books):
    book = runner.find("demo/good", books)
    p = book.parameters
    assert (p["replicas"].type.name, p["replicas"].default, p["replicas"].help) == ("Count", 3, "how many Pods")
    assert not p["context"].required and p["snapshot"].required
    assert p["password"].secret and not p["namespace"].secret
    assert book.purpose == "A fixture runbook."


@pytest.mark.parametrize("values, message", [
    ({"nope": "1", "snapshot": "s"}, "unknown parameter 'nope'"),
    ({"replicas": "three", "snapshot": "s"}, "'three' is not an integer"),
    ({"replicas": "2.5", "snapshot": "s"}, "not an integer"),
    ({"replicas": "-1", "snapshot": "s"}, "below 0"),
    ({"force": "maybe", "snapshot": "s"}, "not a boolean"),
    ({"ratio": "x", "snapshot": "s"}, "not a number"),
    ({"ratio": "nan", "snapshot": "s"}, "not a finite number"),
    ({"namespace": "Luffy", "snapshot": "s"}, "not a namespace name"),
    ({"nodes": "k8s-master,../x", "snapshot": "s"}, "item 1"),
    ({}, "missing required parameter 'snapshot'"),
])
def test_bad_input_is_rejected_with_one_line(books, values, message):
    book = runner.find("demo/good", books)
    with pytest.raises(ParameterError, match=message) as info:
        book.validate(values)
    assert "\n" not in str(info.value)


def test_values_are_converted_to_declared_types(books):
    book = runner.find("demo/good", books)
    got = book.validate({"replicas": "5", "ratio": "0.25", "force": "YES", "nodes": "a,b",
                         "context": "kind", "snapshot": "s.db"})
    assert got == {"replicas": 5, "ratio": 0.25, "force": True, "nodes": ["a", "b"], "context": "kind",
                   "snapshot": "s.db"}


def test_run_writes_notebook_and_html_and_passes_parameters(books, tmp_path):
    marker = tmp_path / "ran.txt"
    result = runner.run(runner.find("demo/good", books), {"marker": str(marker), "snapshot": "s.db",
                                                          "replicas": "7"},
                        output_dir=tmp_path / "out", progress=False)
    assert result.notebook.is_file() and result.html.is_file()
    assert marker.read_text() == repr(("kubebook-demo", 7, 0.5, False, [], "", "s.db", ""))
    assert result.notebook.name.startswith("demo-good-")
    for written in (result.notebook, result.html):
        assert written.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o700


def test_a_secret_reaches_the_kernel_but_no_output(books, tmp_path, monkeypatch):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str((tmp_path / "tmp").resolve()))  # this run's, not other workers'
    (tmp_path / "tmp").mkdir()
    marker = tmp_path / "ran.txt"
    secret = "canary-" + __import__("secrets").token_hex(8)
    result = runner.run(runner.find("demo/good", books), {"marker": str(marker), "snapshot": "s.db",
                                                          "password": secret},
                        output_dir=tmp_path / "out", progress=False)
    assert secret in marker.read_text()  # the kernel had the real value
    nb = json.loads(result.notebook.read_text())
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))
    assert printed.startswith("password is ***")
    for written in (result.notebook, result.html):
        assert secret not in written.read_text()
    assert nb["metadata"]["papermill"]["parameters"]["password"] == "***"
    assert not list((tmp_path / "tmp").glob("kubebook-secrets-*"))  # the secrets' directory is gone too


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


def _papermill(book: Path, out: Path, *params: str):
    args = [a for name, value in zip(params[::2], params[1::2]) for a in ("-p", name, value)]
    return subprocess.run([sys.executable, "-m", "papermill", str(book), str(out), *args, "--no-progress-bar"],
                          capture_output=True, text=True)


def _outputs(path: Path) -> list:
    return [o for c in json.loads(path.read_text())["cells"] for o in c.get("outputs", [])]


@pytest.mark.parametrize("name, value, message", [
    ("replicas", "-2", "below 0"),
    ("ratio", "nan", "not a finite number"),
    ("namespace", "../etc", "not a namespace name"),
    ("password", "in-clear-text", "given in clear text"),
    ("nope", "1", "unknown parameter 'nope'"),
])
def test_plain_papermill_gets_the_same_checks_inside_the_kernel(books, tmp_path, name, value, message):
    marker = tmp_path / "ran.txt"
    proc = _papermill(books / "demo" / "good.ipynb", tmp_path / "out.ipynb", "marker", str(marker),
                      "snapshot", "s", name, value)
    assert proc.returncode != 0
    assert not marker.exists()  # the body cell never ran
    errors = [o for o in _outputs(tmp_path / "out.ipynb") if o["output_type"] == "error"]
    assert len(errors) == 1 and message in errors[0]["evalue"] and errors[0]["traceback"] == \
        [f"ParameterError: {errors[0]['evalue']}"]


def test_plain_papermill_booleans_and_numbers_arrive_typed(books, tmp_path):
    marker = tmp_path / "ran.txt"
    proc = _papermill(books / "demo" / "good.ipynb", tmp_path / "out.ipynb", "marker", str(marker),
                      "snapshot", "s", "force", "false", "replicas", "4")
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == repr(("kubebook-demo", 4, 0.5, False, [], "", "s", ""))


def test_an_empty_default_means_not_set_inside_the_kernel_too(tmp_path):
    """The guard is installed by the parameters cell's own import, so that cell's values must still
    become the defaults: a Name whose default is "" (not set) is accepted under plain papermill."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell('from kubebook.parameters import *  # types\n'
                                     'bound: Name = ""  # optional object\nother: str = "a"  # something')
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("print(repr((bound, other)))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "book.ipynb")
    proc = _papermill(tmp_path / "book.ipynb", tmp_path / "out.ipynb", "other", "b")
    assert proc.returncode == 0, proc.stderr
    assert ["".join(o.get("text", "")) for o in _outputs(tmp_path / "out.ipynb")] == ["('', 'b')\n"]


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
        nb = json.loads(book.path.read_text())
        for cell in nb["cells"]:
            assert not cell.get("outputs") and not cell.get("execution_count"), f"{book.id} has outputs"


def test_masking_a_secret_left_in_the_notebook_keeps_it_a_valid_notebook(tmp_path):
    """A helm value such as ``"1.27"`` is masked as a secret, and the same digits occur inside a
    cell's duration: the scrub must mask the text and leave the number (it once broke the JSON)."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(tag)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="image nginx:1.27\n")]
    cell.metadata["papermill"] = {"duration": 1.2712, "status": "completed"}
    nb.cells = [cell]
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)
    runner._scrub_file(path, ["1.27"])
    again = nbformat.read(path, as_version=4)
    assert again.cells[0].metadata["papermill"]["duration"] == 1.2712
    assert again.cells[0].outputs[0]["text"] == f"image nginx:{safety.masked('1.27')}\n"
    assert path.stat().st_mode & 0o777 == 0o600
