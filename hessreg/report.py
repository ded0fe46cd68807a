"""A curvature report for any PyTorch classifier: how much of its Hessian is Nonlinear Modeling Error.

For logits z = f(θ, x) and the mean cross-entropy L (Paper A),

    H = ∇²_θ L = G + N,   G = Jᵀ H_z J,   N = Σ_i (∂L/∂z_i) ∇²_θ z_i,

and N is where the activations' second derivatives σ'' enter. The parameters are split into layers g (the
parameters one module owns); for A ∈ {H, G, N} the report estimates each diagonal block's trace

    tr A_gg = E_v[v_gᵀ A_gg v_g]   (Hutchinson, Rademacher v_g with E[v vᵀ] = I; standard error sd/√k)

with :func:`hessreg.estimators.hutchinson_trace` on that layer alone, or exactly (``exact``: Σ_i e_iᵀ A e_i, one
product per parameter: small models). tr A = Σ_g tr A_gg: the total's per-probe samples are the sums of the
layers' (independent probes per layer). A layer's H, G and N share their probes, so vᵀHv = vᵀGv + vᵀNv probe by
probe; ``meta['identity_residual']`` is the largest violation relative to max |vᵀHv|. Also the top eigenvalues of
H and G (Lanczos, :func:`hessreg.estimators.top_eigen`) and, per activation module, the fraction of its inputs h
with σ''(h) ≠ 0 as autodiff sees it. BatchNorm normalises with running statistics, or with each batch's
(``train_mode``); dropout is off (one draw of a random function has no well-defined curvature).

Command line: ``python -m hessreg.report --model mypkg.mymod:make --dataset fashion_mnist`` (``--help``).
"""
from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd
import torch
import torchvision
from torch import Tensor, nn

from . import curvature, data, estimators, models

Batch = tuple[Tensor, Tensor]
# Elementwise activations whose σ'' autodiff computes from the module itself (at a kink it returns σ'' = 0).
TORCH_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
                     nn.Mish, nn.Softplus, nn.Tanh, nn.Sigmoid, nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid,
                     nn.LogSigmoid, nn.Softsign, nn.Tanhshrink)


class ReportError(ValueError):
    """A model, weights or dataset the report cannot use; the message says what to change."""


@dataclass
class Report:
    """Traces per layer (the row ``layer == 'total'`` last), top eigenvalues, σ'' ≠ 0 per activation, timings."""
    traces: pd.DataFrame  # layer, params, curvature, trace, std_err, n (probes, or parameters when exact)
    eigen: pd.DataFrame  # curvature, rank, value, iterations
    activations: pd.DataFrame  # layer, type, nonzero, total, fraction, status ('counted' | 'unknown')
    seconds: dict[str, float]
    meta: dict = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        """One tidy table, one row per number: ``quantity`` ∈ trace, eigenvalue, nonzero_d2, seconds."""
        parts = [self.traces.rename(columns={"trace": "value"}).assign(quantity="trace"),
                 self.eigen.assign(quantity="eigenvalue", layer="total"),
                 self.activations.rename(columns={"fraction": "value", "total": "n"}).assign(quantity="nonzero_d2"),
                 pd.DataFrame({"quantity": "seconds", "layer": list(self.seconds), "value": self.seconds.values()})]
        cols = ["model", "quantity", "layer", "curvature", "rank", "value", "std_err", "n", "type", "status"]
        return pd.concat(parts, ignore_index=True).assign(model=self.meta.get("model", "")).reindex(columns=cols)

    def to_dict(self) -> dict:
        """JSON-able: the meta data and each frame as a list of records (NaN → null)."""
        rows = lambda df: json.loads(df.to_json(orient="records"))  # noqa: E731
        return {"meta": self.meta, "traces": rows(self.traces), "eigen": rows(self.eigen),
                "activations": rows(self.activations), "seconds": self.seconds}


# ----------------------------------------------------------------------------------------- model and data

def load_model(spec: str | nn.Module, num_classes: int, in_channels: int, image_size: int, *,
               weights: str | Path | None = None, activation: str = "relu", beta: float = 1.0) -> nn.Module:
    """A model from ``package.module:attr`` (an ``nn.Module``, or a factory called with whichever of num_classes,
    in_channels, image_size its signature names), a hessreg name (``mlp-64x2``, built with ``activation``) or a
    torchvision classification model name (untrained, ``num_classes`` outputs); then ``weights`` (a state dict
    saved by ``torch.save``, or ``{'state_dict': …}``)."""
    if isinstance(spec, nn.Module):
        model = spec
    elif ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            model = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ReportError(f"model {spec!r} does not import: {type(e).__name__}: {e} (the form is "
                              "package.module:attr, with the package's folder on PYTHONPATH)") from e
        if not isinstance(model, nn.Module):
            sizes = dict(num_classes=num_classes, in_channels=in_channels, image_size=image_size)
            model = model(**{k: v for k, v in sizes.items() if k in inspect.signature(model).parameters})
        if not isinstance(model, nn.Module):
            raise ReportError(f"model {spec!r} gave a {type(model).__name__}, not a torch.nn.Module")
    elif any(p.fullmatch(spec) for p in models.MODEL_PATTERNS.values()):
        model = models.build_model(spec, num_classes, in_channels, image_size, activation, beta)
    elif spec in torchvision.models.list_models(module=torchvision.models):
        model = torchvision.models.get_model(spec, weights=None, num_classes=num_classes)
    else:
        raise ReportError(f"unknown model {spec!r}: give package.module:attr, a hessreg name "
                          f"({', '.join(models.MODEL_PATTERNS)}) or a torchvision classification model name")
    if weights is not None:
        try:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            model.load_state_dict(state.get("state_dict", state))
        except Exception as e:  # no file, not a state dict, missing or unexpected keys, other shapes
            raise ReportError(f"weights {str(weights)!r} do not fit the model: {type(e).__name__}: "
                              f"{str(e)[:800]}") from e
    return model


def prepare(model: nn.Module) -> nn.Module:
    """A copy the curvature code can differentiate, computing the same function: torch BatchNorm → hessreg's
    (same state; it never writes running statistics inside torch.func), in-place activations out of place (σ''
    needs their input), dropout → identity."""
    model = copy.deepcopy(model)
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)) and not isinstance(child, models.BatchNorm):
                ref = next(iter(child.state_dict().values()), torch.empty(0))
                bn = models.BatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                      child.track_running_stats).to(ref.device, ref.dtype)
                bn.load_state_dict(child.state_dict())
                setattr(parent, name, bn.train(child.training))
            elif isinstance(child, nn.modules.dropout._DropoutNd):
                setattr(parent, name, nn.Identity())
            elif getattr(child, "inplace", None) is True:
                child.inplace = False
    return model


def load_batches(dataset: str, samples: int, batch_size: int, *, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, train_size: int | None = None,
                 root: str | None = None) -> tuple[list[Batch], int]:
    """The first ``samples`` images of the dataset's training subset of ``train_size`` (default ``samples``;
    image folders: of the val/ folder, since their training stream is augmented), in batches; the class count."""
    ds = data.load(dataset, train_size or samples, 1, device, root)
    if hasattr(ds, "x_train"):
        x, y = ds.x_train[:samples].to(dtype), ds.y_train[:samples]
    else:
        xs, ys = zip(*[b for _, b in zip(range(math.ceil(samples / batch_size)), ds.test_batches(batch_size))])
        x, y = torch.cat(xs)[:samples].to(dtype), torch.cat(ys)[:samples]
    return [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)], ds.num_classes


def fit_inputs(model: nn.Module, batches: list[Batch], num_classes: int) -> list[Batch]:
    """Grey images repeated to RGB when the first convolution wants 3 channels; then one forward pass checks
    that the head gives one logit per class of the dataset."""
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is not None and conv.in_channels == 3 and batches[0][0].dim() == 4 and batches[0][0].shape[1] == 1:
        batches = [(x.expand(-1, 3, -1, -1).contiguous(), y) for x, y in batches]
    x = batches[0][0]
    try:
        with torch.no_grad():
            z = model.eval()(x)
    except Exception as e:
        raise ReportError(f"the model fails on the dataset's inputs, shape {tuple(x.shape)}: "
                          f"{type(e).__name__}: {e}") from e
    if z.dim() != 2 or z.shape[1] != num_classes:
        raise ReportError(f"the dataset has {num_classes} classes but the model's head outputs logits of shape "
                          f"{tuple(z.shape)} (batch × classes expected): build it with num_classes={num_classes} "
                          "or choose the dataset it was made for")
    return batches


# --------------------------------------------------------------------------------------------- the numbers

def layer_groups(model: nn.Module) -> dict[str, list[str]]:
    """Trainable parameter names by the module that owns them (``'1.weight'`` → layer ``'1'``)."""
    groups: dict[str, list[str]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault(name.rpartition(".")[0] or "(root)", []).append(name)
    return groups


def _block_samples(model: nn.Module, batches: list[Batch], kind: str, names: list[str], *, probes: int,
                   exact: bool, seed: int, train_mode: bool, probe_batch: int) -> Tensor:
    """Hutchinson: the k values vᵀA_gg v (mean: tr A_gg). Exact: the same quadratic forms on the unit vectors,
    e_iᵀA_gg e_i = (A_gg)_ii (sum: tr A_gg), ``probe_batch`` at a time. Float64 either way."""
    if not exact:  # the same seed for H, G and N of a layer: paired probes
        gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
        return estimators.hutchinson_trace(model, batches, curvature=kind, params=names, n_probes=probes,
                                           probe_batch=probe_batch, train_mode=train_mode, generator=gen
                                           ).samples.double()
    theta, batches = curvature._setup(model, batches, names, kind, "ce", "fwd")  # matvec's checks, once
    sizes, ref = [t.numel() for t in theta.values()], next(iter(theta.values()))
    diag = ref.new_empty(sum(sizes), dtype=torch.float64)  # in place: small results kept in a list between the
    with curvature.measuring(model, train_mode):  # chunks' large temporaries fragment the heap (RSS +3 MB a chunk)
        f = curvature._model_fn(model, theta)
        for s in range(0, len(diag), probe_batch):  # O(probe_batch · N) memory: never the N × N identity
            eye = ref.new_zeros(min(probe_batch, len(diag) - s), len(diag))
            eye.diagonal(s).fill_(1)  # row r is e_{s+r}
            v = {n: c.reshape(len(eye), *t.shape) for (n, t), c in zip(theta.items(), eye.split(sizes, 1))}
            q = lambda x, y: curvature._quadratic(kind, f, theta, x, y, v, "ce", "fwd")  # noqa: E731 (G: Jv only)
            diag[s:s + len(eye)] = curvature._weighted(batches, q)
    return diag


def _activations(model: nn.Module, batches: list[Batch], train_mode: bool) -> pd.DataFrame:
    """Per activation module, its inputs with σ''(h) ≠ 0 (autodiff of the module itself, forward hooks). Leaf
    modules of types hessreg does not know are listed as 'unknown', never guessed; activations called as
    functions (``F.relu`` in a forward) are invisible to hooks."""
    known = {**estimators.activation_modules(model),
             **{n: m for n, m in model.named_modules() if isinstance(m, TORCH_ACTIVATIONS)}}
    counts = {n: [0, 0] for n in known}

    def count(name: str, module: nn.Module, inputs: tuple) -> None:
        d2 = estimators.second_derivative(module, inputs[0])
        counts[name] = [counts[name][0] + int((d2 != 0).sum()), counts[name][1] + d2.numel()]
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: count(n, mod, i)) for n, m in known.items()]
    try:
        with curvature.measuring(model, train_mode), torch.no_grad():
            for x, _ in batches:
                model(x)
    finally:
        for h in handles:
            h.remove()
    rows = [dict(layer=n, type=type(m).__name__, nonzero=counts[n][0], total=counts[n][1],
                 fraction=counts[n][0] / max(counts[n][1], 1), status="counted") for n, m in known.items()]
    # unknown: a leaf module of the reader's own (not torch.nn's, not hessreg's), or a torch.nn nonlinearity
    # that is not elementwise (softmax, attention); torch.nn's linear, normalisation and pooling layers are none
    unknown = [(n, type(m).__name__) for n, m in model.named_modules() if n and not list(m.children())
               and n not in known and (type(m).__module__ == nn.modules.activation.__name__
                                       or not type(m).__module__.startswith(("torch.nn.", "hessreg.")))]
    rows += [dict(layer=n, type=t, fraction=math.nan, status="unknown")
             for n, t in unknown or ([] if rows else [("(none visible)", "")])]
    return pd.DataFrame(rows, columns=["layer", "type", "nonzero", "total", "fraction", "status"])


def curvature_report(model: nn.Module, batches: list[Batch], *, probes: int = 32, exact: bool = False,
                     eigs: int = 3, lanczos_steps: int = 20, train_mode: bool = False, seed: int = 0,
                     probe_batch: int = 8, name: str = "") -> Report:
    """The report of a model (already :func:`prepare`-d) on ``batches``: Hutchinson (``probes`` per layer) or
    ``exact`` traces of H, G, N per layer and in total, the top ``eigs`` eigenvalues of H and G
    (``lanczos_steps`` products at most), σ'' ≠ 0 per activation module, and the seconds each part took."""
    groups, samples, seconds, rows = layer_groups(model), {}, {}, []
    for kind in curvature.CURVATURES:
        t0 = time.perf_counter()
        for i, (layer, names) in enumerate(groups.items()):
            samples[kind, layer] = _block_samples(model, batches, kind, names, probes=probes, exact=exact,
                                                  seed=seed + i, train_mode=train_mode, probe_batch=probe_batch)
        seconds[f"trace {kind}"] = time.perf_counter() - t0
        by_layer = [samples[kind, g] for g in groups]
        samples[kind, "total"] = torch.cat(by_layer) if exact else torch.stack(by_layer).sum(0)
        for layer in [*groups, "total"]:
            s = samples[kind, layer]
            est, se = (s.sum(), 0.0) if exact else (s.mean(), s.std() / math.sqrt(len(s)) if len(s) > 1 else math.nan)
            params = sum(t.numel() for t in curvature.select_params(model, groups.get(layer)).values())
            rows.append(dict(layer=layer, params=params, curvature=kind, trace=float(est), std_err=float(se),
                             n=len(s)))
    residual = float((samples["H", "total"] - samples["G", "total"] - samples["N", "total"]).abs().max()
                     / samples["H", "total"].abs().max().clamp_min(1e-300))
    eig_rows = []
    for kind in ("H", "G") if eigs else ():
        t0 = time.perf_counter()
        gen = torch.Generator(next(model.parameters()).device).manual_seed(seed)
        e = estimators.top_eigen(model, batches, k=eigs, curvature=kind, max_iter=lanczos_steps, tol=1e-4,
                                 train_mode=train_mode, generator=gen)
        eig_rows += [dict(curvature=kind, rank=r + 1, value=float(v), iterations=e.n_iter)
                     for r, v in enumerate(e.values)]
        seconds[f"eigen {kind}"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    acts = _activations(model, batches, train_mode)
    seconds["nonzero d2"] = time.perf_counter() - t0
    seconds["total"] = sum(seconds.values())
    p = next(model.parameters())
    meta = dict(model=name, samples=sum(len(y) for _, y in batches), batch_size=len(batches[0][1]),
                train_mode=train_mode, probes="exact" if exact else probes, seed=seed, dtype=str(p.dtype),
                device=str(p.device), identity_residual=residual, torch=torch.__version__)
    return Report(pd.DataFrame(rows), pd.DataFrame(eig_rows, columns=["curvature", "rank", "value", "iterations"]),
                  acts, seconds, meta)


def report(model: str | nn.Module, dataset: str = "fashion_mnist", *, samples: int = 512, batch_size: int = 256,
           weights: str | Path | None = None, activation: str = "relu", beta: float = 1.0, device: str = "auto",
           dtype: str = "float32", train_size: int | None = None, data_root: str | None = None, **kw) -> Report:
    """Load the model (:func:`load_model`, :func:`prepare`) and ``samples`` images of ``dataset``, check that
    they fit, return :func:`curvature_report` (``kw``: probes, exact, eigs, lanczos_steps, train_mode, seed,
    probe_batch, name)."""
    if dtype not in ("float32", "float64") or device not in models.DEVICES:
        raise ReportError(f"dtype must be float32 or float64 and device one of {models.DEVICES}; got {dtype}, "
                          f"{device}")
    dev, dt = models.resolve_device(device), getattr(torch, dtype)
    batches, classes = load_batches(dataset, samples, batch_size, device=dev, dtype=dt, train_size=train_size,
                                    root=data_root)
    x = batches[0][0]
    if isinstance(model, str):  # a model built here starts from the same weights every time
        torch.manual_seed(kw.get("seed", 0))
    net = load_model(model, classes, x.shape[1], x.shape[-1], weights=weights, activation=activation, beta=beta)
    net = prepare(net).to(device=dev, dtype=dt)
    kw.setdefault("name", model if isinstance(model, str) else type(model).__name__)
    out = curvature_report(net, fit_inputs(net, batches, classes), **kw)
    out.meta |= dict(dataset=dataset, weights=None if weights is None else str(weights))
    return out


def compare(reports: Mapping[str, Report]) -> pd.DataFrame:
    """Traces side by side: rows (report, layer), columns tr H, tr G, tr N, their standard errors (±) and the
    NME's share tr N / tr H."""
    out = {}
    for name, r in reports.items():
        t = r.traces.pivot_table(index="layer", columns="curvature", values=["trace", "std_err"], sort=False,
                            dropna=False)
        t.columns = [f"{'tr' if v == 'trace' else '±'} {k}" for v, k in t.columns]
        out[name] = t[["tr H", "± H", "tr G", "± G", "tr N", "± N"]].assign(**{"tr N / tr H": t["tr N"] / t["tr H"]})
    return pd.concat(out, names=["model", "layer"])


def eigenvalues(reports: Mapping[str, Report]) -> pd.DataFrame:
    """The top eigenvalues λ_k of H and G, one row per report."""
    return pd.DataFrame({name: {f"λ{e.rank}({e.curvature})": e.value for e in r.eigen.itertuples()}
                         for name, r in reports.items()}).T


def tidy(reports: Mapping[str, Report]) -> pd.DataFrame:
    """Every report's :meth:`Report.table`, one below the other (the ``model`` column tells them apart)."""
    return pd.concat([r.table().assign(model=name) for name, r in reports.items()], ignore_index=True)


# ------------------------------------------------------------------------------------------ figure and CLI

def figure(reports: Report | Mapping[str, Report]):
    """Left: tr G (solid) and tr N (hatched) per layer and in total, ± 2 standard errors, on a symmetric log axis
    (tr N may be 0 or negative; an exact 0 is written as '0'); right: the fraction of σ''(h) ≠ 0 per activation
    module ('σ'' unknown' where hessreg cannot see it). One colour per report."""
    import matplotlib.pyplot as plt
    reports = {reports.meta.get("model", ""): reports} if isinstance(reports, Report) else dict(reports)
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    layers = list(dict.fromkeys(g for r in reports.values() for g in r.traces["layer"]))
    series = [(i, name, kind) for i, name in enumerate(reports) for kind in "GN"]
    w = 0.8 / len(series)
    for j, (i, name, kind) in enumerate(series):
        t = reports[name].traces.query("curvature == @kind").set_index("layer").reindex(layers)
        xs = [k + (j - (len(series) - 1) / 2) * w for k in range(len(layers))]
        a.bar(xs, t["trace"], w, yerr=2 * t["std_err"].fillna(0), color=f"C{i}", alpha=1 if kind == "G" else 0.5,
              hatch="//" if kind == "N" else None, edgecolor="k", lw=0.5, label=f"{name}: tr {kind}")
        for x in (x for x, v in zip(xs, t["trace"]) if v == 0):  # no bar to see on a log axis
            a.text(x, 0, "0", ha="center", va="bottom", fontsize=8)
    t = pd.concat([r.traces for r in reports.values()])
    values, negative = t["trace"].abs(), bool((t["trace"] - 2 * t["std_err"].fillna(0) < 0).any())
    lin = 10 ** math.floor(math.log10(values[values > 0].min())) if (values > 0).any() else 1.0
    a.set_yscale("symlog", linthresh=lin)
    top = math.ceil(math.log10(max(values.max(), lin)))  # decades as ticks, none crowding 0
    a.set_yticks([0] + [s * 10 ** k for k in range(round(math.log10(lin)) + negative, top + 1)
                        for s in ((1, -1) if negative else (1,))])
    a.set_ylim(bottom=None if negative else 0)
    a.axhline(0, color="k", lw=0.6)
    a.set_xticks(range(len(layers)), layers)
    a.set(xlabel="layer (diagonal block)", ylabel="trace", title="tr G and tr N per layer")
    a.legend(fontsize=8)
    acts = list(dict.fromkeys(g for r in reports.values() for g in r.activations["layer"]))
    for i, (name, r) in enumerate(reports.items()):
        d = r.activations.set_index("layer").reindex(acts)
        xs = [k + (i - (len(reports) - 1) / 2) * 0.8 / len(reports) for k in range(len(acts))]
        b.bar(xs, d["fraction"].fillna(0), 0.8 / len(reports), color=f"C{i}", label=name)
        for x, status, f in zip(xs, d["status"], d["fraction"]):
            if status == "unknown" or f == 0:
                b.text(x, 0.01, "σ'' unknown" if status == "unknown" else "0", rotation=90 * (status == "unknown"),
                       ha="center", va="bottom", fontsize=8)
    b.set_xticks(range(len(acts)), acts)
    b.legend(fontsize=8, loc="center")
    b.set(ylim=(0, 1.05), xlabel="activation module", ylabel="fraction of σ''(h) ≠ 0", title="σ'' ≠ 0")
    fig.tight_layout()
    return fig


OPTIONS = [  # flag, type, default, help
    ("--weights", str, None, "a state dict saved by torch.save (or {'state_dict': …})"),
    ("--dataset", str, "fashion_mnist", "one of " + ", ".join((*data.LOADERS, *data.FOLDER_DATASETS))),
    ("--data-root", str, None, "where the dataset is (default: hessreg's search)"),
    ("--activation", str, "relu", "activation of a hessreg model name"), ("--beta", float, 1.0, "its β"),
    ("--samples", int, 512, "training images the curvature is averaged over"),
    ("--batch-size", int, 256, "batch (BatchNorm's statistics with --train-mode)"),
    ("--probes", int, 32, "Hutchinson probes per layer"), ("--probe-batch", int, 8, "probes vmapped at once"),
    ("--eigs", int, 3, "top eigenvalues of H and G (0: none)"), ("--lanczos-steps", int, 20, "at most"),
    ("--device", str, "auto", "auto, cpu or cuda"), ("--dtype", str, "float32", "float32 or float64"),
    ("--seed", int, 0, "of the probes (and of a model built here)"),
    ("--out", str, "_build/report", "folder for report.csv, report.png")]


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: the report of ``--model`` on ``--dataset``; text (or ``--json``) on stdout, the tidy
    table and the figure in ``--out``. Exit status 2 with one line on stderr for a model, weights or data that
    do not fit."""
    ap = argparse.ArgumentParser(prog="python -m hessreg.report", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="package.module:attr, a hessreg name (mlp-64x2) or a "
                    "torchvision classification model name (resnet18)")
    for flag, type_, default, help_ in OPTIONS:
        ap.add_argument(flag, type=type_, default=default, help=help_)
    for flag, help_ in (("--exact", "exact traces: N products per curvature for N parameters, time ∝ N² × samples: "
                         "2 min at N = 26,506, 256 samples, one core, --probe-batch 64; on a laptop up to N ≈ 50,000"),
                        ("--train-mode", "BatchNorm on batch statistics"), ("--json", "JSON on stdout")):
        ap.add_argument(flag, action="store_true", help=help_)
    a = vars(ap.parse_args(argv))
    out, as_json = Path(a.pop("out")), a.pop("json")
    try:
        r = report(a.pop("model"), a.pop("dataset"), **a)
    except (ValueError, data.DataNotFoundError) as e:  # ReportError and the data's own checks: one line
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    r.table().to_csv(out / "report.csv", index=False)
    import matplotlib
    matplotlib.use("Agg")
    figure(r).savefig(out / "report.png", dpi=120)
    one = {r.meta["model"]: r}
    print(json.dumps(r.to_dict(), indent=1) if as_json else "\n\n".join([
        " ".join(f"{k}={v}" for k, v in r.meta.items()), compare(one).to_string(float_format="{:.4g}".format),
        eigenvalues(one).to_string(float_format="{:.4g}".format), r.activations.to_string(index=False),
        "seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in r.seconds.items()), f"written: {out}/report.{{csv,png}}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
