"""Screenshots of gadosynth's HTML pages in headless Chromium, at desktop width and in a narrow
800 px window, to look at (docs, reviews): nothing is asserted here (tests/test_browser.py does).

    python benchmarks/page_screenshots.py OUTPUT_DIR SHOTS_DIR [--height 3000]

OUTPUT_DIR is a gadosynth output folder (participant and group levels run); every *.html in it
is shot as SHOTS_DIR/<page>_<width>px.png. Needs Debian's chromium on PATH. Prints a table of
the pages, widths and time per shot.
"""
import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

WIDTHS = (1300, 800)


def screenshot(chromium: str, page: Path, png: Path, width: int, height: int) -> float:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                        "--disable-background-networking", "--disable-component-update",
                        "--no-first-run", f"--user-data-dir={profile}",
                        f"--window-size={width},{height}", f"--screenshot={png}",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("shots_dir", type=Path)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if not chromium:
        parser.error("chromium is not on PATH (apt-get install chromium)")
    args.shots_dir.mkdir(parents=True, exist_ok=True)
    print("| page | width (px) | screenshot | seconds |\n|---|---:|---|---:|")
    for page in sorted(args.output_dir.glob("*.html")):
        for width in WIDTHS:
            png = args.shots_dir / f"{page.stem}_{width}px.png"
            seconds = screenshot(chromium, page, png, width, args.height)
            print(f"| {page.name} | {width} | {png} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
