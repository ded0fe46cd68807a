"""Benchmark: the curvature report's cost as a multiple of one SGD epoch, same model, same data, same run.

    python experiments/bench_report.py --model mlp-256x3 --train-size 10000 --out _build/bench/report.json

One process, one intra-op thread (``--threads``), CPU by default. The model is trained for two epochs of plain SGD
by :func:`hessreg.train.run` on ``--train-size`` images (batch ``--batch-size``, no augmentation); the second,
warm epoch's time is the denominator. Then :func:`hessreg.report.report` runs on that trained model over the
first ``--samples`` of the same training images, once small to warm up (torch.func's first calls trace), then as
asked; its ``seconds["total"]`` (traces of H, G, N per layer, eigenvalues of H and G, σ'' counts; data loading
excluded) is the numerator. Output: JSON with both times, the ratio and the report's timing per section. The
output is a measurement of this machine: it is not committed.

``--exact`` measures instead the exact traces (``report --exact``) on the network of issue 26, built here as a new
user would: ``nn.Sequential`` Flatten → Linear(784, 32) → GELU → Linear(32, 32) → GELU → Linear(32, 10)
(``--hidden``), PyTorch's default initialisation under ``torch.manual_seed(--seed)``, untrained, float64, on the
first ``--samples`` Fashion-MNIST training images in one batch. Per layer g and A ∈ {H, G, N}, N_g products
e_iᵀA e_i (N = Σ_g N_g = 26,506 per curvature), ``--probe-batch`` unit vectors vmapped at once, after a warm-up
of Hutchinson probes through the same vmapped code. Output: the seconds per curvature and per product, the exact
traces, and memory: the process's peak resident set (``ru_maxrss``) before and after the exact traces, next to
the bytes of one chunk of unit vectors and of the N_g × N_g identity the old code built. Committed:

    python experiments/bench_report.py --exact --probe-batch 64 --out results/bench/report_exact_cpu.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import models, report, train  # noqa: E402
from hessreg.config import Config  # noqa: E402


def issue_mlp(hidden: list[int], seed: int) -> nn.Module:
    """Flatten → [Linear → GELU] per hidden width → Linear(…, 10), float64: a network hessreg does not define."""
    torch.manual_seed(seed)
    widths, layers = [784, *hidden], [nn.Flatten()]
    for d_in, d_out in zip(widths, widths[1:]):
        layers += [nn.Linear(d_in, d_out), nn.GELU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], 10)).double()


def peak_rss_mib() -> float:
    """The process's peak resident set so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** (20 if sys.platform == "darwin" else 10)


def epoch_ratio(a: argparse.Namespace) -> dict:
    """The report's seconds over one warm SGD epoch's, same model and data."""
    config = Config(dataset=a.dataset, train_size=a.train_size, test_size=1000, model=a.model,
                    activation=a.activation, epochs=2, batch_size=a.batch_size, lr=0.05, augment=False,
                    device=a.device)
    record, model = train.run(config, return_model=True)
    epoch_s = record.history[-1]["time_s"]
    common = dict(train_size=a.train_size, device=a.device, batch_size=a.report_batch_size,
                  train_mode=a.train_mode)
    report.report(model, a.dataset, samples=min(a.samples, a.report_batch_size), probes=1, eigs=1,
                  lanczos_steps=2, **common)  # warm-up
    r = report.report(model, a.dataset, samples=a.samples, probes=a.probes, eigs=a.eigs,
                      lanczos_steps=a.lanczos_steps, **common)
    result = dict(model=a.model, activation=a.activation, dataset=a.dataset, train_size=a.train_size,
                  batch_size=a.batch_size, steps_per_epoch=a.train_size // a.batch_size, samples=a.samples,
                  probes=a.probes, eigs=a.eigs, lanczos_steps=a.lanczos_steps, train_mode=a.train_mode,
                  layers=len(report.layer_groups(model)), epoch_s=epoch_s, report_s=r.seconds["total"],
                  report_over_epoch=r.seconds["total"] / epoch_s, sections=r.seconds, threads=torch.get_num_threads(),
                  device=record.provenance["device"], torch=torch.__version__, cpu=platform.processor() or
                  platform.machine())
    return result


def exact(a: argparse.Namespace) -> dict:
    """The exact per-layer traces of H, G and N on :func:`issue_mlp`: seconds, seconds per product, memory."""
    batches, _ = report.load_batches(a.dataset, a.samples, a.samples, device=models.resolve_device(a.device),
                                     dtype=torch.float64)
    model = report.prepare(issue_mlp(a.hidden, a.seed)).to(batches[0][0].device)
    kw = dict(probe_batch=a.probe_batch, eigs=a.eigs, lanczos_steps=a.lanczos_steps)
    report.curvature_report(model, batches, probes=a.probe_batch, **kw)  # warm-up: torch.func traces first calls
    before = peak_rss_mib()  # data, model and warm-up in memory: what grows from here is the exact path's
    r = report.curvature_report(model, batches, exact=True, **kw)
    after = peak_rss_mib()
    t = r.traces
    params = dict(t.query("curvature == 'H'")[["layer", "params"]].itertuples(index=False))
    n, largest = params.pop("total"), max(params.values())
    per_product = {k: r.seconds[f"trace {k}"] / n for k in "HGN"}
    return dict(mode="exact", model=f"nn.Sequential MLP 784-{'-'.join(map(str, a.hidden))}-10 GELU, float64, "
                f"untrained (torch.manual_seed({a.seed}), PyTorch's default init)", dataset=a.dataset,
                samples=a.samples, params=n, layer_params=params, products_per_curvature=n,
                probe_batch=a.probe_batch, seconds_exact_traces=sum(per_product.values()) * n,
                ms_per_product={k: 1e3 * v for k, v in per_product.items()},
                ms_per_parameter_hgn=1e3 * sum(per_product.values()), sections=r.seconds,
                traces={f"{row.curvature} {row.layer}": row.trace for row in t.itertuples()},
                peak_rss_mib_before=before, peak_rss_mib_after=after,
                chunk_mib=a.probe_batch * largest * 8 / 2 ** 20, old_identity_mib=largest ** 2 * 8 / 2 ** 20,
                threads=torch.get_num_threads(), load_average_1min=os.getloadavg()[0], torch=torch.__version__,
                cpu=platform.processor() or platform.machine(), platform=platform.platform())


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--exact", action="store_true", help="exact traces on the MLP of issue 26 (module docstring)")
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32], help="--exact: the hidden widths")
    p.add_argument("--seed", type=int, default=0, help="--exact: of the initial weights")
    p.add_argument("--probe-batch", type=int, default=64, help="--exact: unit vectors vmapped at once")
    p.add_argument("--model", default="mlp-256x3")
    p.add_argument("--activation", default="gelu")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--samples", type=int, default=None, help="default: 512 (--exact: 256)")
    p.add_argument("--report-batch-size", type=int, default=256)
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--eigs", type=int, default=None, help="default: 3 (--exact: 0)")
    p.add_argument("--lanczos-steps", type=int, default=20)
    p.add_argument("--train-mode", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=models.DEVICES)
    p.add_argument("--out", default="_build/bench/report.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    a.samples = a.samples or (256 if a.exact else 512)
    a.eigs = (0 if a.exact else 3) if a.eigs is None else a.eigs
    result = exact(a) if a.exact else epoch_ratio(a)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
