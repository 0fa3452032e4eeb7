"""The HTML report renders in a real headless browser (Debian's chromium) and is not blank."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # a real browser

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def test_html_report_renders_in_headless_chromium(chromium, report, tmp_path):
    from matplotlib.image import imread

    out = report
    shot = tmp_path / "shot.png"
    cmd = [
        chromium,
        *FLAGS,
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={shot}",
        "--window-size=1280,2400",
        (out / "index.html").as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), f"chromium wrote no screenshot (exit {proc.returncode}): {proc.stderr[-1500:]}"
    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1280)
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    # a blank or error page has a handful of colours; text, tables and embedded figures have hundreds
    assert len(colours) > 200, len(colours)
    ink = (pixels.min(axis=-1) < 0.8).mean()  # text, lines and markers: clearly darker than the page
    assert ink > 0.01, ink
