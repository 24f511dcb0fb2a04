"""End-to-end FID of two image folders: cgmbench vs clean-fid vs torchmetrics, same images, same weights.

A random, BatchNorm-calibrated FID-Inception state dict (the builder of ``tests/test_inception.py``)
stands in for the official weights: cgmbench gets it through ``--extractor-weights``, torchmetrics
through a temporary torch-hub cache under the official file name, clean-fid as its custom feature
network (clean-fid's own network is a TorchScript archive that cannot be rebuilt from a state dict).
Each library runs its own pipeline end to end (file decoding, resize, network, statistics, distance):

* ``clean`` protocol: cgmbench ``folder_fid(protocol="clean")`` vs clean-fid ``compute_fid(mode="clean")``;
* ``tf-exact`` protocol: cgmbench ``folder_fid(protocol="tf-exact")`` vs torchmetrics
  ``FrechetInceptionDistance(antialias=False)`` fed the decoded uint8 images.

Wall times are reported as ratios ``library / cgmbench`` measured in the same process, one after
the other (>= 1.0 means cgmbench is no slower). A second part measures the peak memory of the
moments-only path (``StreamingMoments``) for 1k and 10k feature rows (d = 2048), which must not grow with N.

Usage: ``python benchmarks/bench_fid.py [--n 1000] [--size 64] [--threads 2]``. On a busy 2-core
machine 1,000 images per folder take tens of minutes per library (an Inception forward is ~0.1 s
per image on one idle core); ``--n`` lowers it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))


def make_folders(root: Path, n: int, size: int) -> tuple[Path, Path]:
    from test_inception import smooth_images

    out = []
    for name, seed in (("a", 1), ("b", 2)):
        folder = root / name
        folder.mkdir()
        for start in range(0, n, 256):
            batch = smooth_images(min(256, n - start), size, size, seed=seed * 100000 + start)
            for i, image in enumerate(batch):
                Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{start + i:05d}.png")
        out.append(folder)
    return out[0], out[1]


def timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images per folder")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cleanfid-workers", type=int, default=0,
                        help="also time clean-fid with this many DataLoader worker processes (0: only num_workers=0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    from test_inception import PT_FID_WEIGHTS_NAME, TF_WEIGHTS_NAME, random_fid_inception_state_dict

    from cgmbench.cli_metrics import folder_fid
    from cgmbench.extractors import get_extractor
    from cgmbench.metrics import frechet_distance

    tmp = Path(tempfile.mkdtemp(prefix="bench_fid_"))
    try:
        weights = tmp / "random-inception.pth"
        torch.save(random_fid_inception_state_dict(seed=0), weights)
        hub = tmp / "torch_home" / "hub" / "checkpoints"
        hub.mkdir(parents=True)
        for name in (TF_WEIGHTS_NAME, PT_FID_WEIGHTS_NAME):
            shutil.copyfile(weights, hub / name)
        os.environ["TORCH_HOME"] = str(tmp / "torch_home")
        os.environ["CGMBENCH_HOME"] = str(tmp / "home")
        dir_a, dir_b = make_folders(tmp, args.n, args.size)
        print(f"# {args.n} vs {args.n} PNG images of {args.size}x{args.size}, random FID-Inception weights, "
              f"CPU, {args.threads} torch threads, batch {args.batch_size}")

        # -- clean protocol: cgmbench vs clean-fid ---------------------------------------------
        ours_clean, t_ours_clean = timed(lambda: folder_fid(dir_a, dir_b, "clean", "inception-v3", str(weights),
                                                            args.batch_size)["fid"])
        from cleanfid import fid as cleanfid

        net = get_extractor("inception-v3", weights_path=weights, protocol="clean").network

        def cleanfid_model(x):  # clean-fid's InceptionV3W: (x - 128) / 128 on the resized float images
            return net((x - 128) / 128)["pool3"]

        def run_cleanfid(workers=0):
            feats = [cleanfid.get_folder_features(str(d), model=cleanfid_model, num_workers=workers,
                                                  batch_size=args.batch_size, device=torch.device("cpu"),
                                                  mode="clean", verbose=False) for d in (dir_a, dir_b)]
            stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in feats]
            try:  # clean-fid's own distance (scipy sqrtm); it refuses singular cases (N < 2048)
                return cleanfid.frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1]), "sqrtm"
            except (ValueError, TypeError) as e:  # N < d, or SciPy >= 1.16 dropped sqrtm(disp=)
                why = "sqrtm refused N < d" if isinstance(e, ValueError) else "sqrtm(disp=) gone from SciPy"
                return frechet_distance(*stats[0], *stats[1]), f"cgmbench FD: clean-fid's {why}"

        (theirs_clean, how), t_cleanfid = timed(run_cleanfid)
        t_cleanfid_workers = None
        if args.cleanfid_workers:
            _, t_cleanfid_workers = timed(lambda: run_cleanfid(args.cleanfid_workers))

        # -- tf-exact protocol: cgmbench vs torchmetrics ------------------------------------------
        ours_tf, t_ours_tf = timed(lambda: folder_fid(dir_a, dir_b, "tf-exact", "inception-v3", str(weights),
                                                      args.batch_size)["fid"])
        from torchmetrics.image import FrechetInceptionDistance

        def run_torchmetrics():
            metric = FrechetInceptionDistance(feature=2048, antialias=False)
            for folder, real in ((dir_a, True), (dir_b, False)):
                files = sorted(folder.glob("*.png"))
                for start in range(0, len(files), args.batch_size):
                    batch = torch.stack([torch.from_numpy(np.asarray(Image.open(f).convert("RGB"))).permute(2, 0, 1)
                                         for f in files[start:start + args.batch_size]])
                    metric.update(batch, real=real)
            return float(metric.compute())

        theirs_tf, t_torchmetrics = timed(run_torchmetrics)

        print("| protocol | cgmbench FID | reference FID | rel. diff | cgmbench s | reference s | ratio ref/cgmbench |")
        print("|---|---|---|---|---|---|---|")
        print(f"| clean (vs clean-fid, {how}) | {ours_clean:.6f} | {theirs_clean:.6f} | "
              f"{abs(ours_clean - theirs_clean) / abs(theirs_clean):.1e} | {t_ours_clean:.1f} | {t_cleanfid:.1f} | "
              f"{t_cleanfid / t_ours_clean:.2f} |")
        if t_cleanfid_workers is not None:
            print(f"| clean (vs clean-fid, num_workers={args.cleanfid_workers}) | | | | {t_ours_clean:.1f} | "
                  f"{t_cleanfid_workers:.1f} | {t_cleanfid_workers / t_ours_clean:.2f} |")
        print(f"| tf-exact (vs torchmetrics antialias=False) | {ours_tf:.6f} | {theirs_tf:.6f} | "
              f"{abs(ours_tf - theirs_tf) / abs(theirs_tf):.1e} | {t_ours_tf:.1f} | {t_torchmetrics:.1f} | "
              f"{t_torchmetrics / t_ours_tf:.2f} |")

        # -- memory of the moments-only path ------------------------------------------------------
        from bench_frechet import measure

        from cgmbench.metrics import StreamingMoments

        def moments(n: int) -> None:
            m, rng = StreamingMoments(dim=2048), np.random.default_rng(0)
            for start in range(0, n, 500):
                m.update(rng.standard_normal((min(500, n - start), 2048)).astype(np.float32))
            m.compute()

        print("\n| moments-only rows (d=2048) | tracemalloc peak MiB | RSS high-water increase MiB |")
        print("|---|---|---|")
        for n in (1000, 10000):
            peak, rss = measure(lambda: moments(n))
            print(f"| {n} | {peak:.1f} | {'n/a' if rss is None else f'{rss:.1f}'} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
