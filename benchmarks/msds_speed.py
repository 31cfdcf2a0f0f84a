"""MSDS generation speed on one core (not a test): CPU seconds for 100,000 images.

    python benchmarks/msds_speed.py                       # 100,000 images of each variant
    python benchmarks/msds_speed.py --images 20000 --pillow 2000 --check

Times what the msds_generate rule does per image (seeded factors, then the numpy
renderer), in CPU seconds (time.process_time: steadier than wall time on a shared
machine). The issue's target: 100,000 images in <= 60 s on one core. ``--pillow N``
also times the official Pillow calls on the first N images in the same run and prints
the ratio; ``--check`` compares those N images byte for byte.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from rgbench.data import msds

TARGET_SECONDS = 60.0
TARGET_IMAGES = 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=TARGET_IMAGES)
    parser.add_argument("--variants", nargs="+", default=sorted(msds.VARIANTS))
    parser.add_argument("--pillow", type=int, default=0, help="also time Pillow on this many images")
    parser.add_argument("--check", action="store_true", help="compare the Pillow images byte for byte")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # numpy here is single-threaded anyway
    failed = False
    for variant in args.variants:
        started = time.process_time()
        images, factors = msds.generate(variant, args.images, seed=[2020, msds.VARIANTS[variant], 0])
        seconds = time.process_time() - started
        per_image = seconds / args.images
        projected = per_image * TARGET_IMAGES
        verdict = "meets" if projected <= TARGET_SECONDS else "MISSES"
        failed |= projected > TARGET_SECONDS
        line = (f"rgbench msds {variant}: {args.images} images in {seconds:.1f} CPU-s "
                f"({1e6 * per_image:.0f} us/image; {projected:.1f} CPU-s per 100,000: {verdict} <= {TARGET_SECONDS:.0f} s)")
        if args.pillow:
            n = min(args.pillow, args.images)
            started = time.process_time()
            reference = msds.render_with_pillow(factors[:n])
            pillow_per_image = (time.process_time() - started) / n
            line += f"; Pillow calls {1e6 * pillow_per_image:.0f} us/image ({pillow_per_image / per_image:.2f}x slower)"
            if args.check:
                same = int(np.all(reference == images[:n], axis=(1, 2, 3)).sum())
                line += f"; identical {same}/{n}"
                failed |= same != n
        print(line, flush=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
