"""Screenshots of pb ui's pages for docs/ui/ (small PNGs, the viewport only), taken in headless
Chromium through the same CDP client as the browser tests:

    python tests/ui/make_screenshots.py [--out docs/ui]

Makes a demo project in a temporary folder: a finished sweep with a few failures and one
still running, starts `pb ui --port 0` on it, and shoots the experiments page, an experiment
page (its results table sorted and filtered), the failures and runs, its live figures, a
failed task and the clusters and targets page."""
from __future__ import annotations

import argparse
import base64
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "shared")]

from _chromium_cdp import Browser, find_chromium  # noqa: E402
from _ui_data import UiServer  # noqa: E402

TASKS = textwrap.dedent('''
    import math, os, time
    import pushbutton

    def recover(n, noise, seed):
        time.sleep(float(os.environ.get("DEMO_SLEEP", "0")))
        if noise > 0.4 and seed % 7 == 3:
            raise FloatingPointError(f"solver diverged at n={n}, noise={noise}")
        err = noise / math.sqrt(n) * (1 + (seed % 5) / 10)
        for step in range(3):
            pushbutton.log(step=step, residual=err * (3 - step))
        print(f"n={n} noise={noise}: error {err:.4g}")
        return {"error": err, "converged": err < 0.02}
''')


def spec(name, reps):
    return textwrap.dedent(f"""\
        name = "{name}"
        description = "Recovery error against problem size and noise"
        function = "demo:recover"
        [space]
        grid = {{ n = [100, 200, 400, 800, 1600], noise = [0.1, 0.2, 0.3, 0.5] }}
        reps = {reps}
        [resources]
        retries = 0
        """)


def shoot(page, path: Path, width=1200, height=760):
    page.call("Emulation.setDeviceMetricsOverride",
              {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    r = page.call("Page.captureScreenshot", {"format": "png"})
    path.write_bytes(base64.b64decode(r["data"]))
    print(f"{path} ({path.stat().st_size // 1024} KiB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(HERE.parents[1] / "docs" / "ui"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = find_chromium()
    if binary is None:
        sys.exit("no chromium found (PB_CHROMIUM names one)")
    root = Path(tempfile.mkdtemp(prefix="pb-ui-shots-")) / "demo"
    root.mkdir()
    (root / "demo.py").write_text(TASKS)
    (root / "noise.toml").write_text(spec("noise-sweep", 10))
    (root / "live.toml").write_text(spec("live-sweep", 40))
    pb = [sys.executable, "-m", "pushbutton"]
    subprocess.run(pb + ["run", "noise.toml", "-m", "first look"], cwd=root,
                   capture_output=True)
    live = subprocess.Popen(pb + ["run", "live.toml", "--workers", "2", "-m", "bigger"],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, DEMO_SLEEP="0.05"))
    time.sleep(6)
    server = UiServer(root)
    browser = Browser(binary)
    try:
        page = browser.new_page(width=1200, height=760)

        def go(url):
            page.open(url)
            time.sleep(1.5)  # a live update or two, charts drawn
        go(server.url)
        shoot(page, out / "experiments.png", height=360)
        go(server.base + "/exp/noise-sweep?where=noise+%3E%3D+0.3&sort=error&desc=1#results")
        shoot(page, out / "results.png")
        go(server.base + "/exp/noise-sweep")
        shoot(page, out / "experiment.png")
        time.sleep(2)  # Plotly draws the figures from their JSON endpoint
        page.eval("document.getElementById('pb-figures').scrollIntoView()")
        shoot(page, out / "figures.png")
        page.eval("window.scrollTo(0, 0)")
        tid = page.eval("document.querySelector('#pb-causes a[href*=\"/task/\"]')"
                        ".getAttribute('href')")
        go(server.base + tid)
        shoot(page, out / "task.png")
        go(server.base + "/clusters")
        time.sleep(2)  # the targets' first poll
        shoot(page, out / "clusters.png", height=480)
    finally:
        browser.close()
        server.close()
        live.terminate()
        live.wait(30)


if __name__ == "__main__":
    main()
