"""The DiT sampling benchmark's correctness check at toy size: cgmbench's batched, per-sample-noise
``DiTGenerator.generate`` and the benchmark's plain one-sample-at-a-time reference loop give the same samples."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import bench_dit_sampling as bench  # noqa: E402

pytestmark = [pytest.mark.slow]


@pytest.mark.parametrize("w", [1.0, 4.0])
def test_reference_loop_matches_generate(w):
    model = bench.build_tiny_dit()
    gen, decoder = bench.make_generator(model)
    seeds, labels = [11, 12, 13], torch.tensor([0, 5, 17])
    images = bench.cgmbench_sample(gen, labels, seeds, steps=4, w=w)
    ref = bench.reference_batch(model, labels, seeds, bench.Schedule(4), w)
    assert decoder.last.std() > 0.1  # the random network gives non-trivial samples
    assert (decoder.last - ref).abs().max() < 1e-4
    assert (images.int() - bench.to_uint8(ref).int()).abs().max() <= 1
    # the comparison is sensitive: one sample with another seed or label differs
    other = bench.reference_sample(model, 5, 99, bench.Schedule(4), w)
    assert (other - ref[1:2]).abs().max() > 0.1
    other = bench.reference_sample(model, 6, 12, bench.Schedule(4), w)
    assert (other - ref[1:2]).abs().max() > 1e-3


def test_schedule_matches_create_diffusion():
    from cgmbench.diffusion import create_diffusion

    for steps in (1, 4, 50):
        sched, diff = bench.Schedule(steps), create_diffusion(str(steps))
        assert sched.timesteps == diff.timestep_map.tolist()
        assert torch.allclose(torch.from_numpy(sched.betas), torch.from_numpy(diff.betas), rtol=1e-12, atol=0)


def test_run_benchmark_toy():
    results = bench.run_benchmark(num_samples=2, steps=3, guidance=(1.0, 2.0), repeats=1, log=lambda m: None)
    assert [r["w"] for r in results] == [1.0, 2.0]
    for r in results:
        assert r["float_max_abs_diff"] < 1e-4 and r["ratio"] > 0
