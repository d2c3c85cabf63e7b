"""Look at a `vitmae report` page as a person would: headless Chromium renders it to a PNG.

    python tools/screenshot_report.py runs/demo-<time>/report.html --out docs/report.png

Needs Chromium (Debian: `apt-get install chromium`; also found as chromium-browser or
google-chrome). The page is rendered at `--width` x `--height` CSS pixels, then scaled to
`--scale` of that and saved as an 8-bit palette PNG to keep the file small.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise SystemExit(f"no Chromium found (looked for {', '.join(BROWSERS)}); on Debian: "
                     "apt-get install chromium")


def screenshot(page: Path, out: Path, width: int, height: int, scale: float,
               colors: int) -> Path:
    """Render `page` with headless Chromium; save it scaled and palette-quantised to `out`."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.png"
        cmd = [find_browser(), "--headless", "--no-sandbox", "--disable-gpu",
               "--hide-scrollbars", "--no-first-run", f"--user-data-dir={tmp}/profile",
               f"--window-size={width},{height}", f"--screenshot={raw}",
               page.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if not raw.is_file():
            raise SystemExit(f"chromium wrote no screenshot (exit {done.returncode}):\n"
                             f"{done.stderr[-2000:]}")
        with Image.open(raw) as im:
            im = im.convert("RGB")
            if scale != 1:
                im = im.resize((round(im.width * scale), round(im.height * scale)),
                               Image.Resampling.LANCZOS)
            im = im.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
            out.parent.mkdir(parents=True, exist_ok=True)
            im.save(out, optimize=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("page", type=Path, help="the report's .html file")
    ap.add_argument("--out", type=Path, default=Path("docs/report.png"))
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--scale", type=float, default=0.6)
    ap.add_argument("--colors", type=int, default=128, help="palette size of the PNG")
    args = ap.parse_args(argv)
    out = screenshot(args.page, args.out, args.width, args.height, args.scale, args.colors)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
