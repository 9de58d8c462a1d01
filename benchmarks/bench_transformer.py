"""Benchmark (not a test): skiplab's EncoderBlock against torch.nn.TransformerEncoderLayer.

Builds a torch layer, converts it with :func:`skiplab.models.encoder_block_from_torch` (same
weights, same sizes), and times one training step (forward + backward of the mean square
of the output) of each, alternating the two in the same process. Reports throughput in
tokens per second, the ratio skiplab / torch (above 1: skiplab is faster), and each step's
peak memory (:func:`skiplab.probes.peak_memory`). Both norm placements; the skiplab block
with its fused attention path (``fast=True``, the default) and written out (``fast=False``).

    python benchmarks/bench_transformer.py                  # CPU: batch 16, 128 tokens, d 256
    python benchmarks/bench_transformer.py --device cuda --batch 64 --length 512
"""

from __future__ import annotations

import argparse
import statistics

import torch
from torch import nn

from skiplab.models import encoder_block_from_torch
from skiplab.probes import peak_memory
from timing import timed


def step(model: nn.Module, x: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    model(x).pow(2).mean().backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.length, args.d_model, device=device)
    tokens = args.batch * args.length
    print(f"device={device} batch={args.batch} length={args.length} d_model={args.d_model} "
          f"heads={args.heads} repeats={args.repeats} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}\n")
    print("| norm | skiplab attention | torch (tokens/s) | skiplab (tokens/s) | "
          "throughput ratio | torch peak (MB) | skiplab peak (MB) | memory ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for norm_first in (False, True):
        reference = nn.TransformerEncoderLayer(args.d_model, args.heads, 4 * args.d_model,
                                               dropout=0.0, batch_first=True,
                                               norm_first=norm_first).to(device).train()
        for fast in (True, False):
            ours = encoder_block_from_torch(reference, fast=fast).to(device).train()
            models = {"torch": reference, "skiplab": ours}
            for _ in range(args.warmup):
                for model in models.values():
                    step(model, x)
            times = {k: [] for k in models}
            for _ in range(args.repeats):
                for key, model in models.items():
                    times[key].append(timed(lambda: step(model, x), device))
            peaks = {k: peak_memory(lambda m=m: step(m, x), device).megabytes
                     for k, m in models.items()}
            speed = {k: tokens / statistics.median(v) for k, v in times.items()}
            print(f"| {'pre' if norm_first else 'post'} | {'fused' if fast else 'written out'} | "
                  f"{speed['torch']:,.0f} | {speed['skiplab']:,.0f} | "
                  f"{speed['skiplab'] / speed['torch']:.3f} | {peaks['torch']:.0f} | "
                  f"{peaks['skiplab']:.0f} | {peaks['skiplab'] / peaks['torch']:.3f} |")


if __name__ == "__main__":
    main()
