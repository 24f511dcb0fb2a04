"""Benchmark: KV-cached ``generate()`` against the same model decoding with full recomputation per token.

Both paths sample a small LlamaGen-layout GPT (:func:`build_model`: random weights, the output head
re-drawn because the official init zeroes it) with :func:`baselines.parti.sampling.generate`:

* ``cached``: ``use_cache=True``, the static KV cache: one prefill, then one token per model call
  (LlamaGen's ``generate``, gpt-fast lineage);
* ``full``: ``use_cache=False``: at every step the whole sequence (condition + tokens so far) is run again
  and the last position's logits are used, as lucidrains/parti-pytorch decodes (no cache).

The same per-sample generators drive both, so they must give the same tokens: the benchmark asserts it and
prints the largest difference of the per-step logits. Each repeat runs the four configurations
(w = 1 and w = ``--guidance``, cached and full) in turn, so a change of load hits all; the median is reported, with the ratio ``full / cached``, at 64
(8×8 grid) and 256 (16×16) tokens. The CFG overhead is the cached time with guidance (``w = --guidance``,
the doubled ``[cond; uncond]`` batch) over the cached time at ``w = 1`` (no doubled batch).

Run from the repository root::

    OMP_NUM_THREADS=1 python benchmarks/bench_ar_sampling.py [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's packages first

import torch  # noqa: E402

from baselines.parti.models import ModelArgs, Transformer  # noqa: E402
from baselines.parti.sampling import generate  # noqa: E402
from cgmbench.seeding import torch_generator  # noqa: E402


def build_model(block_size: int, dim: int, n_layer: int, n_head: int, vocab: int, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    model = Transformer(ModelArgs(dim=dim, n_layer=n_layer, n_head=n_head, vocab_size=vocab, block_size=block_size,
                                  num_classes=10, cls_token_num=1, model_type="c2i")).eval()
    with torch.no_grad():
        model.output.weight.normal_(0.0, dim ** -0.5)
    return model


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run_interleaved(model: Transformer, labels: torch.Tensor, n_tokens: int, ws, repeats: int, seeds, knobs):
    """Median seconds per (w, use_cache), every repeat running all four in turn; tokens checked equal."""
    def sample(w: float, use_cache: bool):
        gens = [torch_generator(s) for s in seeds]
        return generate(model, labels, n_tokens, generators=gens, guidance_scale=w, use_cache=use_cache,
                        return_trace=True, **knobs)

    times = {(w, c): [] for w in ws for c in (True, False)}
    outs = {}
    for _ in range(repeats):
        for key in times:
            t, outs[key] = timed(lambda: sample(*key))
            times[key].append(t)
    diffs = {}
    for w in ws:
        (tok_c, tr_c), (tok_f, tr_f) = outs[(w, True)], outs[(w, False)]
        assert torch.equal(tok_c, tok_f), f"cached and full decodes differ at {n_tokens} tokens, w={w}"
        diffs[w] = (tr_c["model_logits_last"] - tr_f["model_logits_last"]).abs().max().item()
    return {k: statistics.median(v) for k, v in times.items()}, diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dim", type=int, default=192)
    parser.add_argument("--n-layer", type=int, default=3)
    parser.add_argument("--n-head", type=int, default=3)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--guidance", type=float, default=2.0)
    args = parser.parse_args()

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads {torch.get_num_threads()}, "
          f"load {os.getloadavg()}")
    print(f"GPT dim {args.dim}, {args.n_layer} layers, {args.n_head} heads, vocab {args.vocab}; batch {args.batch}; "
          f"top-k 100, top-p 0.95, temperature 1.0; median of {args.repeats}")
    knobs = dict(temperature=1.0, top_k=100, top_p=0.95)
    labels = torch.arange(args.batch) % 10
    seeds = [1000 + i for i in range(args.batch)]
    print(f"{'tokens':>6} {'w':>4} {'cached s':>9} {'full s':>9} {'full/cached':>11} {'max |dlogit|':>12}")
    ws = (1.0, args.guidance)
    overhead = {}
    for n_tokens in (64, 256):
        model = build_model(n_tokens, args.dim, args.n_layer, args.n_head, args.vocab)
        med, diffs = run_interleaved(model, labels, n_tokens, ws, args.repeats, seeds, knobs)
        for w in ws:
            c, f = med[(w, True)], med[(w, False)]
            print(f"{n_tokens:>6} {w:>4g} {c:>9.3f} {f:>9.3f} {f / c:>10.1f}x {diffs[w]:>12.2e}")
        overhead[n_tokens] = med[(args.guidance, True)] / med[(1.0, True)]
    for n_tokens, ratio in overhead.items():
        print(f"CFG overhead at {n_tokens} tokens (cached, w={args.guidance:g} doubled batch vs w=1): {ratio:.2f}x")
    print(f"load after {os.getloadavg()}; same tokens asserted for every row")


if __name__ == "__main__":
    main()
