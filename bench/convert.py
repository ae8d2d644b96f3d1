"""Conversion throughput: our worker pool beside the ImageMagick CLI (one process per image) and
pyvips (when installed), on the same generated images, in the same run; then the peak memory of a
worker converting a 100-megapixel image.

    .venv/bin/python bench/convert.py [--n 16] [--rounds 3] [--workers 2] [--skip-100mp]

Input: a 3000x2000 JPEG (q90, photo-like, generated here). Each case resizes to 1200 wide and
writes WebP (q80), PNG or TIFF (LZW). All sides use the same parallelism (``--workers``), one
thread each, a reduced-size JPEG decode and a Lanczos resize. The sides alternate within each
round and the median round is printed (shared VMs are noisy). Nothing is asserted. pyvips is
optional (``pip install "pyvips[binary]"``); its PNG encoder does no row filtering by default, so
it is faster there but not equivalent.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobengine.imaging import ConversionPool, Limits, parse_modifiers
from jobengine.imaging.pool import policy_dir
from jobengine.imaging.sniff import sniff_file

CASES = {
    "webp": ("fmt=webp&qlt=80&wid=1200", ["-quality", "80", "-define", "webp:method=4"], "webp"),
    "png": ("fmt=png&wid=1200", ["-quality", "65"], "png"),
    "tiff": ("fmt=tif,rgb,lzw&wid=1200", ["-compress", "lzw"], "tiff"),
}
CONVERT = shutil.which("convert", path="/usr/bin:/bin") or "convert"


def make_photo(path: Path, width: int, height: int) -> Path:
    """A photo-like JPEG: gradients, shapes and noise (decodes and compresses like a photo)."""
    from PIL import Image, ImageDraw

    base = Image.radial_gradient("L").resize((width, height))
    rgb = Image.merge(
        "RGB",
        (
            base,
            base.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
            base.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
        ),
    )
    ImageDraw.Draw(rgb).ellipse((width // 4, height // 4, width // 2, height // 2), fill="red")
    noise = Image.effect_noise((width, height), 30).convert("RGB")
    Image.blend(rgb, noise, 0.2).save(path, "JPEG", quality=90)
    return path


def timed(n: int, workers: int, job: Callable[[int], object]) -> float:
    """Images per second for ``n`` calls of ``job`` on ``workers`` threads."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        list(executor.map(job, range(n)))
    return n / (time.perf_counter() - start)


def bench_pool(
    pool: ConversionPool, src: Path, out: Path, query: str, n: int, workers: int
) -> float:
    req = parse_modifiers(query)
    for i in range(workers):  # warm-up: start the workers
        pool.convert(src, out, req, f"warm{i}.jpg")
    return timed(n, workers, lambda i: pool.convert(src, out, req, f"pool{i}.jpg"))


def bench_cli(src: Path, out: Path, options: list[str], ext: str, n: int, workers: int) -> float:
    env = {**os.environ, "MAGICK_CONFIGURE_PATH": str(policy_dir()), "MAGICK_THREAD_LIMIT": "1"}

    def one(i: int) -> None:
        argv = [CONVERT, "-define", "jpeg:size=1200x800", f"jpeg:{src}", "-auto-orient",
                "-resize", "1200x", "-strip", *options, f"{ext}:{out}/cli{i}.{ext}"]  # fmt: skip
        subprocess.run(argv, check=True, env=env)

    return timed(n, workers, one)


def bench_vips(src: Path, out: Path, case: str, n: int, workers: int) -> float | None:
    try:
        import pyvips  # type: ignore[import-not-found]
    except (ImportError, OSError):
        return None
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    save = {"webp": {"Q": 80}, "png": {"compression": 6}, "tiff": {"compression": "lzw"}}[case]
    ext = {"tiff": "tif"}.get(case, case)

    def one(i: int) -> None:
        pyvips.Image.thumbnail(str(src), 1200).write_to_file(f"{out}/vips{i}.{ext}", **save)

    return timed(n, workers, one)


def peak_memory(src: Path, out: Path, query: str) -> tuple[float, float, object]:
    """(seconds, peak RSS MiB, output size) of a fresh worker converting ``src``."""
    with ConversionPool(1, Limits(timeout_seconds=600)) as pool:
        pool.convert(src.parent / "small.jpg", out, parse_modifiers("wid=8"), "start.jpg")
        (pid,) = pool.worker_pids()
        start = time.perf_counter()
        (result,) = pool.convert(src, out, parse_modifiers(query), "mp100.jpg")
        seconds = time.perf_counter() - start
        status = Path(f"/proc/{pid}/status").read_text()
    hwm = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    return seconds, int(hwm.split()[1]) / 1024, sniff_file(result).size


def report(case: str, rates: dict[str, float]) -> str:
    """One result line: images/s per side and our ratio to each."""
    ours, cli = rates["pool"], rates["cli"]
    line = f"  {case:<5} pool {ours:6.1f}/s   convert CLI {cli:6.1f}/s (pool {ours / cli:.2f}x)"
    vips = rates.get("vips")
    return line + (
        f"   pyvips {vips:6.1f}/s (pool {ours / vips:.2f}x)" if vips else "   pyvips n/a"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="images per case, side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--skip-100mp", action="store_true", help="skip the 100 MP memory test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        root = Path(tmp)
        out = root / "out"
        out.mkdir()
        src = make_photo(root / "photo.jpg", 3000, 2000)
        make_photo(root / "small.jpg", 64, 48)
        print(f"3000x2000 JPEG -> 1200 wide, n={args.n}, {args.workers} parallel, ImageMagick CLI "
              f"{CONVERT}")  # fmt: skip
        with ConversionPool(args.workers) as pool:
            for case, (query, options, ext) in CASES.items():
                runs: dict[str, list[float]] = {"pool": [], "cli": [], "vips": []}
                for _ in range(args.rounds):
                    runs["pool"].append(bench_pool(pool, src, out, query, args.n, args.workers))
                    runs["cli"].append(bench_cli(src, out, options, ext, args.n, args.workers))
                    vips = bench_vips(src, out, case, args.n, args.workers)
                    runs["vips"] += [vips] if vips else []
                print(report(case, {k: statistics.median(v) for k, v in runs.items() if v}))
        if not args.skip_100mp:
            big = make_photo(root / "mp100.jpg", 10_000, 10_000)
            for query in ("fmt=webp&wid=1200", "fmt=jpeg&qlt=85"):
                seconds, mib, size = peak_memory(big, out, query)
                print(f"  100 MP JPEG, {query:<17} {seconds:5.1f} s -> {size}, worker peak RSS "
                      f"{mib:5.0f} MiB")  # fmt: skip
            print("  (above ImageMagick's memory+map limits the pixel cache goes to the worker's "
                  "temporary directory, on disk)")  # fmt: skip


if __name__ == "__main__":
    main()
