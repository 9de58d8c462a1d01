"""Benchmark (not a test): skiplab's ResNet-50 and DenseNet-121 against torchvision's.

Times one training step (forward + backward of a cross-entropy loss) of each pair in the
same process, alternating the two models so that drift in the machine's speed hits both
alike, and measures each step's peak memory with :func:`skiplab.probes.peak_memory`.
Prints a Markdown table with the median times and the ratios skiplab / torchvision.

    python benchmarks/bench_models.py                      # CPU: batch 4 at 224x224
    python benchmarks/bench_models.py --device cuda --batch 64
"""

from __future__ import annotations

import argparse
import statistics

import torch
import torch.nn.functional as F
import torchvision

from skiplab.models import densenet_from_torchvision, resnet_from_torchvision
from skiplab.probes import peak_memory
from timing import timed

PAIRS = {
    "ResNet-50": (torchvision.models.resnet50, resnet_from_torchvision),
    "DenseNet-121": (torchvision.models.densenet121, densenet_from_torchvision),
}


def step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=None, help="default: 4 on CPU, 64 on CUDA")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    device = torch.device(args.device)
    batch = args.batch or (64 if device.type == "cuda" else 4)
    torch.manual_seed(0)
    x = torch.randn(batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 1000, (batch,), device=device)
    print(f"device={device} batch={batch} size={args.size} repeats={args.repeats} "
          f"threads={torch.get_num_threads()} torch={torch.__version__}\n")
    print("| model | torchvision step (s) | skiplab step (s) | time ratio | "
          "torchvision peak (MB) | skiplab peak (MB) | memory ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (make_reference, convert) in PAIRS.items():
        reference = make_reference().to(device).train()
        ours = convert(reference).to(device).train()
        models = {"torchvision": reference, "skiplab": ours}
        for _ in range(args.warmup):
            for model in models.values():
                step(model, x, y)
        times = {k: [] for k in models}
        for _ in range(args.repeats):
            for key, model in models.items():
                times[key].append(timed(lambda: step(model, x, y), device))
        peaks = {k: peak_memory(lambda m=m: step(m, x, y), device).megabytes
                 for k, m in models.items()}
        t_ref, t_ours = (statistics.median(times[k]) for k in ("torchvision", "skiplab"))
        print(f"| {name} | {t_ref:.3f} | {t_ours:.3f} | {t_ours / t_ref:.3f} | "
              f"{peaks['torchvision']:.0f} | {peaks['skiplab']:.0f} | "
              f"{peaks['skiplab'] / peaks['torchvision']:.3f} |")


if __name__ == "__main__":
    main()
