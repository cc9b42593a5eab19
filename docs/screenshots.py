"""Regenerate docs/dashboard.png and docs/report.png: `python docs/screenshots.py`.

Runs `anvil run examples/demo.jsonl --simulate --serve` in a temporary directory, opens the
dashboard address it prints in headless Chromium (Debian's /usr/bin/chromium, driven by
Playwright), takes the dashboard mid-run, waits for the run to finish, then writes
`anvil report` and takes it opened offline. Needs `pip install -e '.[test]'` and chromium.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-proxy-server"]  # fmt: skip
CHARTS_WITH = "n => [...document.querySelectorAll('[data-chart]')].every(c => +c.dataset.drawn >= n)"
WIDTH = 1280


def _dashboard_url(proc: subprocess.Popen[str]) -> str:
    """The address the run prints, read from its stderr through a pipe (the token is never written
    to a file), which a thread then keeps draining."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        found = re.search(r"dashboard at (\S+#token=\S+)", line)
        if found:
            threading.Thread(target=proc.stderr.read, daemon=True).start()
            return found.group(1)
    raise SystemExit("no dashboard address printed:\n" + "".join(seen))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:
        cwd = Path(tmp)
        cmd = [sys.executable, "-m", "anvil_cli", "run", str(ROOT / "examples" / "demo.jsonl"), "--simulate",
               "--serve", "127.0.0.1:0", "--no-dashboard"]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 900})
            page.goto(_dashboard_url(proc))
            page.wait_for_function(CHARTS_WITH, arg=8, timeout=60_000)
            page.screenshot(path=ROOT / "docs" / "dashboard.png", full_page=True)
            proc.wait(timeout=120)
            report = cwd / "report.html"
            subprocess.run(
                [sys.executable, "-m", "anvil_cli", "report", "-o", str(report)], cwd=cwd, check=True
            )
            offline = browser.new_context(viewport={"width": WIDTH, "height": 900}, offline=True)
            page = offline.new_page()
            page.goto(report.as_uri())
            page.wait_for_function(CHARTS_WITH, arg=2, timeout=10_000)
            page.screenshot(path=ROOT / "docs" / "report.png", full_page=True)
        finally:
            browser.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    print("wrote docs/dashboard.png and docs/report.png")


if __name__ == "__main__":
    main()
