"""Benchmark: the curvature report's cost as a multiple of one SGD epoch, same model, same data, same run.

    python experiments/bench_report.py --model mlp-256x3 --train-size 10000 --out _build/bench/report.json

One process, one intra-op thread (``--threads``), CPU by default. The model is trained for two epochs of plain SGD
by :func:`hessreg.train.run` on ``--train-size`` images (batch ``--batch-size``, no augmentation); the second,
warm epoch's time is the denominator. Then :func:`hessreg.report.report` runs on that trained model over the
first ``--samples`` of the same training images, once small to warm up (torch.func's first calls trace), then as
asked; its ``seconds["total"]`` (traces of H, G, N per layer, eigenvalues of H and G, σ'' counts; data loading
excluded) is the numerator. Output: JSON with both times, the ratio and the report's timing per section. The
output is a measurement of this machine: it is not committed.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import models, report, train  # noqa: E402
from hessreg.config import Config  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mlp-256x3")
    p.add_argument("--activation", default="gelu")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--train-size", type=int, default=10000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--report-batch-size", type=int, default=256)
    p.add_argument("--probes", type=int, default=32)
    p.add_argument("--eigs", type=int, default=3)
    p.add_argument("--lanczos-steps", type=int, default=20)
    p.add_argument("--train-mode", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", choices=models.DEVICES)
    p.add_argument("--out", default="_build/bench/report.json")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
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
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
