"""End-to-end FID of two image folders: cgmbench vs clean-fid vs torchmetrics, same images, same weights.

A random, BatchNorm-calibrated FID-Inception state dict (the builder of ``tests/parity/test_inception.py``)
stands in for the official weights: cgmbench gets it through ``--extractor-weights``, torchmetrics
through a temporary torch-hub cache under the official file name, clean-fid through pytorch-fid's port of
the same network as its custom feature network (clean-fid's own network is a TorchScript archive that cannot
be rebuilt from a state dict). Every side runs its own implementation of the network.
Each library runs its own pipeline end to end (file decoding, resize, network, statistics, distance):

* ``clean`` protocol: cgmbench ``folder_fid(protocol="clean")`` vs clean-fid ``compute_fid(mode="clean")``;
* ``tf-exact`` protocol: cgmbench ``folder_fid(protocol="tf-exact")`` vs torchmetrics
  ``FrechetInceptionDistance(antialias=False)`` fed the decoded uint8 images.

Wall and CPU times are reported as ratios ``library / cgmbench`` measured in the same process, one after
the other (>= 1.0 means cgmbench is no slower); ``--abba`` times each side twice in mirrored order so a load
that changes during the run affects both alike. Peak memory: ``benchmarks/bench_memory.py``.

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
    """``(value, (wall seconds, CPU seconds of this process, all threads))``."""
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn()
    return value, (time.perf_counter() - t0, time.process_time() - c0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="images per folder")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--protocols", default="clean,tf-exact", help="comma-separated: clean, tf-exact")
    parser.add_argument("--abba", action="store_true",
                        help="time each side twice in mirrored order (ours, peer, peer, ours) and sum")
    parser.add_argument("--cleanfid-workers", type=int, default=0,
                        help="also time clean-fid with this many DataLoader worker processes (0: only num_workers=0)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")

    from test_inception import PT_FID_WEIGHTS_NAME, TF_WEIGHTS_NAME, random_fid_inception_state_dict

    from cgmbench.scoring.fid import fid as folder_fid
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
        from cleanfid import fid as cleanfid

        # clean-fid's own network is a TorchScript archive of the TF graph that cannot be rebuilt from a state
        # dict; it gets the independent PyTorch port of the same FID network instead (pytorch-fid's InceptionV3,
        # loaded from the same weights through the torch-hub cache), fed clean-fid's (x - 128) / 128 input
        from pytorch_fid.inception import InceptionV3 as PytorchFIDInception

        net = PytorchFIDInception([3], resize_input=False, normalize_input=False).eval()

        def cleanfid_model(x):
            return net((x - 128) / 128)[0].flatten(1)

        def run_cleanfid(workers=0):
            feats = [cleanfid.get_folder_features(str(d), model=cleanfid_model, num_workers=workers,
                                                  batch_size=args.batch_size, device=torch.device("cpu"),
                                                  mode="clean", verbose=False) for d in (dir_a, dir_b)]
            stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in feats]
            try:  # clean-fid's own distance (scipy sqrtm); it refuses singular cases (N < 2048)
                return cleanfid.frechet_distance(stats[0][0], stats[0][1], stats[1][0], stats[1][1])
            except (ValueError, TypeError):  # N < d, or SciPy >= 1.16 dropped sqrtm(disp=): same formula, ours
                return frechet_distance(*stats[0], *stats[1])

        # -- tf-exact protocol: cgmbench vs torchmetrics ------------------------------------------
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

        def ours(protocol):
            return lambda: folder_fid(dir_a, dir_b, protocol, "inception-v3", str(weights), args.batch_size)["fid"]

        peers = {"clean": ("clean-fid", run_cleanfid), "tf-exact": ("torchmetrics antialias=False", run_torchmetrics)}
        print("| protocol | peer | cgmbench FID | peer FID | rel. diff | cgmbench s (wall) | peer s (wall) | "
              "ratio peer/cgmbench wall | ratio CPU time |")
        print("|---|---|---|---|---|---|---|---|---|")
        for protocol in args.protocols.split(","):
            name, peer = peers[protocol]
            # A B (B A): with --abba each side runs twice in mirrored order, so a load that drifts during the
            # run costs both sides alike
            order = ["ours", "peer", "peer", "ours"] if args.abba else ["ours", "peer"]
            times = {"ours": [0.0, 0.0], "peer": [0.0, 0.0]}
            values = {}
            for side in order:
                value, (wall, cpu) = timed(ours(protocol) if side == "ours" else peer)
                values[side] = value
                times[side][0] += wall
                times[side][1] += cpu
            (w_o, c_o), (w_p, c_p) = times["ours"], times["peer"]
            print(f"| {protocol} | {name} | {values['ours']:.6f} | {values['peer']:.6f} | "
                  f"{abs(values['ours'] - values['peer']) / abs(values['peer']):.1e} | {w_o:.1f} | {w_p:.1f} | "
                  f"{w_p / w_o:.2f} | {c_p / c_o:.2f} |", flush=True)
        if args.cleanfid_workers:
            (_, (w, _)) = timed(lambda: run_cleanfid(args.cleanfid_workers))
            print(f"clean-fid with num_workers={args.cleanfid_workers}: {w:.1f} s wall")

    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
