"""Conversion throughput: our export path (the worker pool) beside the ImageMagick CLI spawned once
per image and beside pyvips, on the same generated images, in the same run; where the time of one
image goes; then the peak memory of a worker converting a 100-megapixel image.

    .venv/bin/python bench/convert.py [--n 16] [--rounds 3] [--workers 2] [--skip-100mp]

Input: a 3000x2000 JPEG (q90, photo-like, generated here). Each case resizes it to 1200 wide
(Lanczos, metadata stripped) and writes WebP (q80, method 4), PNG (8-bit RGB, zlib 6, adaptive
row filters) or TIFF (LZW, horizontal predictor): the same output settings on every side, checked
by printing the mean output size of each. Sides, each given the same two cores:

* ``pool``: ``ConversionPool(workers).convert`` from ``workers`` threads (one ImageMagick thread
  per helper process); the full export path: sniffing, limits, ping, decode, pipeline, encode,
  atomic write with fsync, JSON-lines IPC;
* ``cli``: ``/usr/bin/convert`` spawned once per image, ``workers`` at a time, one thread each,
  as a script would call it (no decode hint);
* ``cli+hint``: the same with ``-define jpeg:size=1200x800`` (ImageMagick's own shrink-on-load,
  the trick our path uses);
* ``cli+hint omp``: the same, one process at a time with ``workers`` OpenMP threads;
* ``pyvips`` (``make bench`` installs it): ``thumbnail`` (shrink-on-load, Lanczos 3) from
  ``workers`` threads, ``VIPS_CONCURRENCY=1``, operation cache off.

The sides alternate within each round; each figure is the median of the rounds (shared machines
are noisy). Printed per side: wall-clock images per second, CPU time per image (every process of
the side: this one, the helpers or the CLI processes; less sensitive to other load on the
machine than the wall clock), and the mean output size. Ratios are wall-clock. Nothing is
asserted. Then: where one image's time goes, and the 100 MP memory test (``--skip-100mp``).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobengine.imaging import ConversionPool, Limits, parse_modifiers
from jobengine.imaging.pool import policy_dir

SIZE = (3000, 2000)
TARGET = (1200, 800)
CASES: dict[str, tuple[str, list[str], dict[str, Any]]] = {
    # case: (our IS modifiers, the CLI's output options, pyvips save options)
    "webp": ("fmt=webp&qlt=80&wid=1200", ["-quality", "80", "-define", "webp:method=4"],
             {"Q": 80, "effort": 4}),
    "png": ("fmt=png&wid=1200", ["-quality", "65", "-define", "png:color-type=2",
                                 "-define", "png:bit-depth=8"],
            {"compression": 6, "filter": "all", "bitdepth": 8}),
    "tiff": ("fmt=tif,rgb,lzw&wid=1200", ["-compress", "lzw"],
             {"compression": "lzw", "predictor": "horizontal"}),
}  # fmt: skip
EXT = {"webp": "webp", "png": "png", "tiff": "tif"}
CONVERT = shutil.which("convert", path="/usr/bin:/bin") or "convert"
MP100 = (12240, 8160)  # 99.9 megapixels, 3:2, under max_source_pixels (100,000,000)
MEMORY_CASES = (
    "fmt=webp&qlt=80&wid=1200",
    "fmt=jpeg&qlt=85&wid=3000",
    "fmt=jpeg&qlt=85&wid=8000",  # shrink under 2x: no shrink-on-load, three 100 MP-class caches
    "fmt=jpeg&qlt=85",
    "fmt=tif,rgb,lzw",
    "fmt=webp&qlt=80",
)


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


class Rate(NamedTuple):
    """Wall-clock images per second, and CPU milliseconds per image (all processes of a side)."""

    per_second: float
    cpu_ms: float


def cpu_seconds(pids: Sequence[int]) -> float:
    """CPU time of this process, its reaped children (CLI runs) and the live ``pids``."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed(n: int, workers: int, job: Callable[[int], object], pids: Sequence[int] = ()) -> Rate:
    """Rate of ``n`` calls of ``job`` on ``workers`` threads (``pids``: helper processes)."""
    cpu = cpu_seconds(pids)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        list(executor.map(job, range(n)))
    wall = time.perf_counter() - start
    return Rate(n / wall, (cpu_seconds(pids) - cpu) / n * 1000)


def mean_kb(out: Path, prefix: str) -> float:
    sizes = [p.stat().st_size for p in out.glob(f"{prefix}*")]
    return statistics.mean(sizes) / 1000 if sizes else 0.0


class Sides:
    """Everything one case needs to run each side once."""

    def __init__(self, root: Path, src: Path, pool: ConversionPool, workers: int) -> None:
        self.src = src
        self.pool = pool
        self.workers = workers
        self.out = root / "out"
        # The CLI runs under our policy too; the OpenMP variant under a copy allowing N threads
        # (the policy can only lower the thread count, and ours says 1).
        self.omp_policy = root / "policy-omp"
        self.omp_policy.mkdir()
        text = (policy_dir() / "policy.xml").read_text()
        text = re.sub(r'name="thread" value="\d+"', f'name="thread" value="{workers}"', text)
        (self.omp_policy / "policy.xml").write_text(text)

    def fresh(self, name: str) -> Path:
        out = self.out / name
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        return out

    def ours(self, case: str, n: int) -> Rate:
        req = parse_modifiers(CASES[case][0])
        out = self.fresh("pool")
        for i in range(self.workers):  # warm-up (starts the helpers on the first round)
            self.pool.convert(self.src, out, req, f"warm{i}.jpg")
        for warm in out.glob("warm*"):
            warm.unlink()
        pids = self.pool.worker_pids()
        return timed(
            n, self.workers, lambda i: self.pool.convert(self.src, out, req, f"o{i}.jpg"), pids
        )

    def cli(self, case: str, n: int, *, hint: bool, threads: int = 1) -> Rate:
        policy = self.omp_policy if threads > 1 else policy_dir()
        env = {**os.environ, "MAGICK_CONFIGURE_PATH": str(policy)}
        env["MAGICK_THREAD_LIMIT"] = env["OMP_NUM_THREADS"] = str(threads)
        define = ["-define", "jpeg:size={}x{}".format(*TARGET)] if hint else []
        out = self.fresh(f"cli-{hint}-{threads}")
        ext = EXT[case]

        def one(i: int) -> None:
            argv = [CONVERT, *define, f"jpeg:{self.src}", "-auto-orient", "-filter", "Lanczos",
                    "-resize", f"{TARGET[0]}x", "-strip", *CASES[case][1],
                    f"{case}:{out}/c{i}.{ext}"]  # fmt: skip
            subprocess.run(argv, check=True, env=env)

        return timed(n, self.workers if threads == 1 else 1, one)

    def vips(self, case: str, n: int) -> Rate | None:
        pyvips = load_pyvips()
        if pyvips is None:
            return None
        save = {**CASES[case][2], "keep": 0}  # VIPS_FOREIGN_KEEP_NONE: strip metadata
        out = self.fresh("vips")

        def one(i: int) -> None:
            thumb = pyvips.Image.thumbnail(str(self.src), TARGET[0])
            thumb.write_to_file(f"{out}/v{i}.{EXT[case]}", **save)

        one(-1)  # warm-up
        return timed(n, self.workers, one)


def load_pyvips() -> Any:
    """pyvips with one thread per operation and no operation cache, or None if not installed."""
    os.environ.setdefault("VIPS_CONCURRENCY", "1")
    try:
        import pyvips  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except (ImportError, OSError):
        return None
    pyvips.cache_set_max(0)
    return pyvips


SIDES = ("pool", "cli", "cli+hint", "cli+hint omp", "pyvips")


def run_case(sides: Sides, case: str, n: int, rounds: int) -> dict[str, Rate]:
    runs: dict[str, list[Rate]] = {side: [] for side in SIDES}
    for _ in range(rounds):
        runs["pool"].append(sides.ours(case, n))
        runs["cli"].append(sides.cli(case, n, hint=False))
        runs["cli+hint"].append(sides.cli(case, n, hint=True))
        runs["cli+hint omp"].append(sides.cli(case, n, hint=True, threads=sides.workers))
        vips = sides.vips(case, n)
        if vips is not None:
            runs["pyvips"].append(vips)
    return {
        side: Rate(
            statistics.median(r.per_second for r in v), statistics.median(r.cpu_ms for r in v)
        )
        for side, v in runs.items()
        if v
    }


def report(case: str, rates: dict[str, Rate], sizes: dict[str, float]) -> list[str]:
    ours = rates["pool"].per_second
    lines = [f"  {case:<5}          wall   CPU/image   output"]
    for side in SIDES:
        found = rates.get(side)
        if found is None:
            lines.append(f"    {side:<13}    n/a (pip install 'pyvips[binary]')")
            continue
        rate = found.per_second
        ratio = (
            "" if side == "pool" else
            f"  pool/{side} {ours / rate:4.2f}x" if side != "pyvips" else
            f"  pyvips/pool {rate / ours:4.2f}x"
        )  # fmt: skip
        size = sizes.get(side, 0)
        lines.append(f"    {side:<13} {rate:5.1f}/s {found.cpu_ms:7.0f} ms {size:5.0f} kB{ratio}")
    return lines


def profile(src: Path, root: Path) -> list[str]:
    """Where one image's time goes (ms, median of 7, one at a time, this process): our path's
    steps in-process, the pool round trip, the CLI's process start-up, and pyvips' two halves."""
    os.environ.update(MAGICK_CONFIGURE_PATH=str(policy_dir()), MAGICK_THREAD_LIMIT="1")
    import wand.resource
    from wand.image import Image

    from jobengine.imaging.convert import convert_file
    from jobengine.imaging.encode import OutputFiles
    from jobengine.imaging.geometry import jpeg_size_hint, plan
    from jobengine.imaging.sniff import jpeg_is_complete, sniff_file
    from jobengine.imaging.steps import Job, run_pipeline

    wand.resource.limits["thread"] = 1
    out = root / "out" / "profile"
    out.mkdir(parents=True, exist_ok=True)
    limits = Limits()
    lines = ["  one image, one at a time (ms, median of 7):",
             "    case  sniff+EOI  ping  decode  pipeline  encode+fsync  in-process  pool call"
             "  CLI start-up  pyvips thumbnail+save"]  # fmt: skip
    start_up = []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run([CONVERT, f"jpeg:{root / 'small.jpg'}", f"webp:{out}/tiny.webp"], check=True)
        start_up.append(time.perf_counter() - t)
    pyvips = load_pyvips()
    with ConversionPool(1) as pool:
        for case, (query, _, save) in CASES.items():
            req = parse_modifiers(query)
            steps: dict[str, list[float]] = {}

            def lap(name: str, t0: float, steps: dict[str, list[float]] = steps) -> float:
                now = time.perf_counter()
                steps.setdefault(name, []).append(now - t0)
                return now

            pool.convert(src, out, req, "warm.jpg")
            for i in range(8):
                t = time.perf_counter()
                sniff_file(src)
                jpeg_is_complete(src)
                t = lap("sniff", t)
                with Image.ping(filename=f"jpeg:{src}[0]") as probe:
                    raw = (int(probe.width), int(probe.height))
                p = plan(raw[0], raw[1], req)
                t = lap("ping", t)
                with Image() as img:
                    hint = jpeg_size_hint(p, req, raw)
                    assert hint is not None
                    img.options["jpeg:size"] = "{}x{}".format(*hint)
                    img.read(filename=f"jpeg:{src}[0]")
                    t = lap("decode", t)
                    run_pipeline(Job(img, req, p, limits))
                    t = lap("pipeline", t)
                    OutputFiles(out).write(img, req, f"p{i}.{EXT[case]}")
                    t = lap("encode", t)
                convert_file(src, out, req, "inproc.jpg", limits)
                t = lap("inproc", t)
                pool.convert(src, out, req, "pool.jpg")
                t = lap("pool", t)
                if pyvips is not None:
                    thumb = pyvips.Image.thumbnail(str(src), TARGET[0]).copy_memory()
                    t = lap("thumb", t)
                    thumb.write_to_file(f"{out}/v.{EXT[case]}", **save, keep=0)
                    t = lap("save", t)
            ms = {k: statistics.median(v[1:]) * 1000 for k, v in steps.items()}
            vips = f"{ms['thumb']:.0f} + {ms['save']:.0f}" if pyvips is not None else "n/a"
            lines.append(
                f"    {case:<5} {ms['sniff']:8.1f} {ms['ping']:5.1f} {ms['decode']:7.1f} "
                f"{ms['pipeline']:9.1f} {ms['encode']:13.1f} {ms['inproc']:11.1f} "
                f"{ms['pool']:10.1f} {statistics.median(start_up) * 1000:13.1f}  {vips:>12}"
            )
    return lines


class Memory(NamedTuple):
    """A conversion's seconds, the worker's peak RSS (VmHWM), its peak anonymous RSS (heap:
    what cannot be paged out but to swap), and the output size."""

    seconds: float
    peak_mib: float
    anon_mib: float
    size: object


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def peak_memory(src: Path, small: Path, out: Path, query: str) -> Memory:
    """A fresh worker converting ``src``; its anonymous RSS is sampled every 10 ms."""
    import threading

    with ConversionPool(1, Limits(timeout_seconds=900)) as pool:
        pool.convert(small, out, parse_modifiers("wid=8"), "start.jpg")
        (pid,) = pool.worker_pids()
        anon = [_rss_kib(pid, "RssAnon")]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.01):
                anon.append(_rss_kib(pid, "RssAnon"))

        sampler = threading.Thread(target=sample)
        sampler.start()
        start = time.perf_counter()
        try:
            (result,) = pool.convert(src, out, parse_modifiers(query), "mp100.jpg")
        finally:
            seconds = time.perf_counter() - start
            done.set()
            sampler.join()
        hwm = _rss_kib(pid, "VmHWM")
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own output, read for its header only
    with Image.open(result) as img:
        size = img.size
    result.unlink()
    return Memory(seconds, hwm / 1024, max(anon) / 1024, size)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--n", type=int, default=16, help="images per case, side and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cases", default=",".join(CASES), help='comma-separated; "" for none')
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--skip-100mp", action="store_true", help="skip the 100 MP memory test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-convert-") as tmp:
        root = Path(tmp)
        src = make_photo(root / "photo.jpg", *SIZE)
        small = make_photo(root / "small.jpg", 64, 48)
        pyvips = load_pyvips()
        vips = (
            f"pyvips {pyvips.__version__} (libvips {pyvips.version(0)}.{pyvips.version(1)})"
            if pyvips
            else "pyvips not installed"
        )
        print(f"{SIZE[0]}x{SIZE[1]} JPEG -> {TARGET[0]} wide, n={args.n}, {args.rounds} rounds "
              f"(medians), {args.workers} parallel, {os.cpu_count()} CPUs; {CONVERT}; "
              f"{vips}")  # fmt: skip
        with ConversionPool(args.workers) as pool:
            sides = Sides(root, src, pool, args.workers)
            for case in filter(None, args.cases.split(",")):
                rates = run_case(sides, case, args.n, args.rounds)
                sizes = {side: mean_kb(sides.out / name, "")
                         for side, name in (("pool", "pool"), ("cli", "cli-False-1"),
                                            ("cli+hint", "cli-True-1"),
                                            ("cli+hint omp", f"cli-True-{args.workers}"),
                                            ("pyvips", "vips"))}  # fmt: skip
                print("\n".join(report(case, rates, sizes)), flush=True)
        if not args.skip_profile:
            print("\n".join(profile(src, root)), flush=True)
        if not args.skip_100mp:
            big = make_photo(root / "mp100.jpg", *MP100)
            out = root / "out" / "mp100"
            out.mkdir(parents=True)
            print(f"  {MP100[0]}x{MP100[1]} JPEG ({big.stat().st_size / 1e6:.0f} MB), one fresh "
                  "worker per case; peak RSS = VmHWM of the worker (with the page cache of "
                  "its memory-mapped pixel caches), anon = peak anonymous RSS:")  # fmt: skip
            for query in MEMORY_CASES:
                m = peak_memory(big, small, out, query)
                print(f"    {query:<26} {m.seconds:6.1f} s -> {m.size}, peak RSS "
                      f"{m.peak_mib:5.0f} MiB, anon {m.anon_mib:5.0f} MiB", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
