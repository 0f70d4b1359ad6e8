"""Driving JupyterLab in headless Chromium for the browser tests (Playwright's Python API).

The browser is Debian's ``chromium`` (``make test`` installs it): Playwright's own browser
download cannot be reached from these machines, so it is given by ``executable_path``.
JupyterLab is started the documented way, ``kubebook jupyter --lab NAME``, on a copy of the
runbooks (a trainer's autosave must not write outputs into the repository's notebooks).
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "browser"
URL = re.compile(r"http://127\.0\.0\.1:\d+/lab\?token=\S+")


def need_chromium() -> None:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (`make test` installs it with "
                    "apt-get when run as root); Playwright's own browser download is not reachable here")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (make setup installs the test extra)")


@dataclass
class Classroom:
    """``kubebook jupyter`` running for a lab, with the URL it printed."""

    process: subprocess.Popen
    url: str
    root: Path

    @property
    def base(self) -> str:
        return self.url.split("/lab?")[0]

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]

    def notebook(self, runbook: str) -> str:
        # ?reset: a clean workspace, not the tabs another page of the same server left open
        return f"{self.base}/lab/tree/{runbook}.ipynb?reset&token={self.token}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # kubebook jupyter stops its JupyterLab on SIGTERM
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start_classroom(lab, runbooks: Path, root: Path, *, timeout: float = 120) -> Classroom:
    """Copy the runbooks to ``root`` and run ``kubebook jupyter --lab <lab>`` on them until it prints its URL."""
    shutil.copytree(runbooks, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    env = {**os.environ, "KUBEBOOK_RUNBOOKS": str(root), "PYTHONUNBUFFERED": "1"}
    out = open(root.parent / "kubebook-jupyter.out", "w+")
    process = subprocess.Popen([sys.executable, "-m", "kubebook.cli", "jupyter", "--lab", lab.name], env=env,
                               stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out.seek(0)
        text = out.read()
        found = URL.search(text)
        if found:
            return Classroom(process, found.group(0), root)
        if process.poll() is not None:
            raise AssertionError(f"kubebook jupyter exited with {process.returncode}:\n{text[-2000:]}")
        time.sleep(0.2)  # the command's output is a file; it is read until the URL line appears
    process.terminate()
    raise AssertionError("kubebook jupyter printed no URL in time")


class Browser:
    """One headless Chromium with a fresh profile; pages are JupyterLab notebooks."""

    def __init__(self):
        from playwright.sync_api import sync_playwright
        self._playwright = sync_playwright().start()
        self.profile = tempfile.mkdtemp(prefix="kubebook-chromium-")
        self.context = self._playwright.chromium.launch_persistent_context(
            self.profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS,
            viewport={"width": 1500, "height": 1000})

    def close(self) -> None:
        self.context.close()
        self._playwright.stop()
        shutil.rmtree(self.profile, ignore_errors=True)


class Notebook:
    """A runbook open in JupyterLab."""

    def __init__(self, browser: Browser, classroom: Classroom, runbook: str, shots: Path):
        self.page = browser.context.new_page()
        self.runbook = runbook
        self.shots = shots
        self.classroom = classroom
        self.page.goto(classroom.notebook(runbook))
        self.page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
        self.wait_kernel_idle(timeout=90)

    def wait_kernel_idle(self, timeout: float = 60) -> None:
        """Until the server has this notebook's kernel session, idle, and the page shows it idle."""
        import json
        import urllib.request
        deadline = time.monotonic() + timeout
        while True:
            request = urllib.request.Request(f"{self.classroom.base}/api/sessions",
                                             headers={"Authorization": f"token {self.classroom.token}"})
            with urllib.request.urlopen(request, timeout=5) as response:
                sessions = json.loads(response.read())
            if any(s["path"].endswith(f"{self.runbook}.ipynb") and (s.get("kernel") or {}).get("execution_state") == "idle"
                   for s in sessions):
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.runbook}: no idle kernel after {timeout:.0f}s: {sessions}")
            time.sleep(0.3)  # the kernel's start is not announced to a REST client; it is polled
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=timeout * 1000)
        self.page.get_by_text(re.compile(r"\| Idle$")).first.wait_for(timeout=timeout * 1000)

    def run_all(self, *, timeout: float = 150) -> None:
        """Run ▸ Run All Cells, then wait until every code cell has run (no ``[*]`` left).

        A click that lands while the new kernel is still connecting runs nothing; it is repeated
        until a cell has started (an execution prompt shows ``*`` or a number)."""
        started = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
                          .some(p => /\\[(\\*|\\d+)\\]/.test(p.textContent))"""
        for attempt in range(5):
            self.page.get_by_role("menuitem", name="Run", exact=True).click()
            self.page.get_by_role("menuitem", name=re.compile(r"^Run All Cells")).click()
            try:
                self.page.wait_for_function(started, timeout=10_000)
                break
            except Exception:
                self.page.keyboard.press("Escape")
        else:
            self.screenshot(f"{self.runbook.replace('/', '-')}-run-all-never-started")
            raise AssertionError(f"{self.runbook}: Run All Cells never started a cell")
        try:
            self.page.wait_for_function(
                """() => {
                    const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
                    return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
                }""", timeout=timeout * 1000)
        except Exception:
            self.screenshot(f"{self.runbook.replace('/', '-')}-run-all-timeout")
            raise
        errors = self.page.locator(".jp-Notebook .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
                                   has_text="Traceback")
        assert errors.count() == 0, f"{self.runbook}: a cell failed:\n{errors.first.inner_text()[:3000]}"

    # ---- widgets ------------------------------------------------------------------------------
    def widget(self, selector: str = ".jupyter-widgets"):
        return self.page.locator(f".jp-Notebook .jp-OutputArea-output {selector}")

    def dropdown(self, label: str, option: str) -> None:
        box = self.page.locator(".widget-dropdown", has=self.page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(label)}$")))
        box.locator("select").select_option(option)

    def text(self, label: str, value: str) -> None:
        box = self.page.locator(".widget-text, .widget-textarea",
                                has=self.page.locator("label.widget-label", has_text=re.compile(f"^{re.escape(label)}$")))
        field = box.locator("input, textarea").first
        field.fill(value)
        field.press("Tab")  # ipywidgets syncs a text box's value on change

    def button(self, name: str | re.Pattern):
        return self.page.locator(".jp-Notebook .jupyter-widgets button.jupyter-button", has_text=name)

    def click(self, name: str | re.Pattern) -> None:
        self.button(name).first.click()

    def table_rows(self, css: str = "table.kubebook-table") -> list[dict[str, str]]:
        """The first widget table of that class, as rows of {column: text}."""
        return self.page.eval_on_selector(f".jp-Notebook .jupyter-widgets {css}", """t => {
            const head = [...t.querySelectorAll('thead th')].map(h => h.textContent.trim());
            return [...t.querySelectorAll('tbody tr')].map(r => Object.fromEntries(
                [...r.querySelectorAll('td')].map((d, i) => [head[i], d.textContent.trim()])));
        }""")

    def wait_rows(self, check, *, what: str, timeout: float = 60,
                  css: str = "table.kubebook-table") -> list[dict[str, str]]:
        """The table's rows once ``check(rows)`` holds on one rendering of it. A live board redraws as its
        watches catch up, so a condition on several rows must hold on the same redraw, not row by row."""
        deadline = time.monotonic() + timeout
        while True:
            rows = self.table_rows(css)
            if check(rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not shown within {timeout:g} s; the table shows {rows}")
            self.page.wait_for_timeout(250)

    def wait_text(self, text: str | re.Pattern, *, timeout: float = 60, selector: str = ".jupyter-widgets") -> None:
        from playwright.sync_api import expect
        expect(self.widget(selector).filter(has_text=text).first).to_be_visible(timeout=timeout * 1000)

    def screenshot(self, name: str, *, element: str | None = None) -> Path:
        """Saved under the test's tmp dir and in test-artifacts/browser/ (ignored by git)."""
        path = self.shots / f"{name}.png"
        target = self.page.locator(element).first if element else self.page
        target.screenshot(path=str(path))
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path

    def close(self) -> None:
        self.page.close()
