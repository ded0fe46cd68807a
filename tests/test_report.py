"""The curvature report (hessreg.report) against a dense float64 oracle, its command line on a model the package
does not define, its errors, and a reader's own method (``package.module:attr``) through chapter 02's grid."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from hessreg import chapters, methods, models, plots, report
from hessreg.results import RecordStore
from hessreg.sweep import sweep
from hessreg.train import Config
from tests.oracle import Dense

REPO = Path(__file__).resolve().parent.parent
DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def dense(model: nn.Module, x, y, train_mode: bool = False) -> dict[str, torch.Tensor]:
    """H, G and N = H − G from the shared dense float64 oracle (tests/oracle.py)."""
    oracle = Dense(model, x, y, train_mode=train_mode)
    H, G = oracle.hessian(), oracle.gauss_newton()
    return {"H": H, "G": G, "N": H - G}


def block_traces(model: nn.Module, A: torch.Tensor) -> dict[str, float]:
    """tr of each layer's diagonal block of the dense A, and the total."""
    out, i = {}, 0
    for layer, names in report.layer_groups(model).items():
        n = sum(dict(model.named_parameters())[k].numel() for k in names)
        out[layer] = float(A.diagonal()[i:i + n].sum())
        i += n
    return out | {"total": float(A.diagonal().sum())}


def tiny_mlp(act: str) -> nn.Module:
    torch.manual_seed(0)
    return models.MLP(4, 3, width=5, depth=2, activation=act).to(DT)


def tiny_data(n: int = 12):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=g, dtype=DT), torch.randint(0, 3, (n,), generator=g)


def traces(r: report.Report, kind: str) -> dict[str, float]:
    return dict(r.traces.query("curvature == @kind")[["layer", "trace"]].itertuples(index=False))


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_traces_and_eigenvalues_match_the_dense_oracle(act):
    model = tiny_mlp(act)
    x, y = tiny_data()
    oracle = dense(model, x, y)
    r = report.curvature_report(report.prepare(model), [(x, y)], exact=True, eigs=2, lanczos_steps=60)
    for kind in "HGN":
        want, got = block_traces(model, oracle[kind]), traces(r, kind)
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), kind
    got = {k: traces(r, k)["total"] for k in "HGN"}
    assert got["H"] == pytest.approx(got["G"] + got["N"], rel=1e-12, abs=1e-14)
    for kind in "HG":
        top = torch.linalg.eigvalsh(oracle[kind]).flip(0)[:2]
        assert r.eigen.query("curvature == @kind")["value"].tolist() == pytest.approx(top.tolist(), rel=1e-6)
    if act == "relu":  # z is linear in each layer's weights once the ReLU masks are fixed: every N block is 0
        assert set(traces(r, "N").values()) == {0.0} and oracle["N"].abs().max() > 1e-3  # (not N itself)
    # Hutchinson: within 4 standard errors of the exact block traces, H = G + N probe by probe
    mc = report.curvature_report(report.prepare(model), [(x[:5], y[:5]), (x[5:], y[5:])], probes=3000,
                                 probe_batch=500, eigs=0)
    for kind in "HGN":
        want = block_traces(model, oracle[kind])
        for row in mc.traces.query("curvature == @kind").itertuples():
            assert abs(row.trace - want[row.layer]) <= 4 * row.std_err + 1e-12, (kind, row.layer)
    assert mc.meta["identity_residual"] < 1e-12


def test_exact_traces_never_build_the_n_by_n_identity():
    """Issue 26: the exact path built the N × N identity once per chunk of unit vectors (5 GB in float64 for a
    25,120-weight layer). Here N = 3,010 in one layer: no op may allocate N²·8 / 8 bytes (9 MB; the identity is 72
    MB, one chunk of 100 unit vectors 2.4 MB), as torch's profiler sees every op's CPU memory."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(300, 10), nn.GELU(), nn.Linear(10, 3)).to(DT)
    x, y = torch.randn(4, 300, generator=torch.Generator().manual_seed(1), dtype=DT), torch.tensor([0, 1, 2, 0])
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        r = report.curvature_report(report.prepare(net), [(x, y)], exact=True, eigs=0, probe_batch=100)
    n = sum(p.numel() for p in net[0].parameters())
    assert r.traces.query("layer == '0'")["n"].tolist() == [n] * 3 and n == 3010
    largest = max(e.cpu_memory_usage for e in prof.events())
    assert largest < n * n * 8 / 8, f"one op allocated {largest / 2 ** 20:.1f} MiB"


def test_batchnorm_eval_and_train_mode_match_the_oracle():
    """torch's BatchNorm1d (swapped for hessreg's) and an in-place ReLU: with running statistics the model is
    affine in each layer's weights between the masks, so tr N = 0; with batch statistics it is not."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5), nn.ReLU(inplace=True), nn.Linear(5, 3)).to(DT)
    with torch.no_grad():
        net[1].running_mean.normal_(), net[1].running_var.uniform_(0.5, 2), net[1].weight.uniform_(0.5, 2)
    x, y = tiny_data()
    for train_mode in (False, True):
        ours = report.prepare(net)  # the oracle runs it on elementary ops (tests/oracle.py), the report natively
        with torch.no_grad():  # the swap computes the same function (on a copy: train mode moves running stats)
            torch.testing.assert_close(ours.train(train_mode)(x), copy.deepcopy(net).train(train_mode)(x))
        oracle = dense(ours, x, y, train_mode)
        r = report.curvature_report(ours, [(x, y)], exact=True, eigs=0, train_mode=train_mode)
        for kind in "HGN":
            assert traces(r, kind) == pytest.approx(block_traces(net, oracle[kind]), rel=1e-9, abs=1e-12)
        assert (traces(r, "N")["0"] == 0.0) is not train_mode
        acts = r.activations.set_index("layer")
        assert acts.loc["2", "status"] == "counted" and acts.loc["2", "fraction"] == 0.0


MODULE = '''
import torch
from torch import nn

class Swish(nn.Module):  # a custom activation: hessreg cannot know its σ''
    def forward(self, x):
        return x * torch.sigmoid(x)

def make(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.Tanh(), nn.Linear(16, 8), Swish(),
                         nn.Linear(8, num_classes))

def seven():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 7))

def conv(num_classes, in_channels):
    return nn.Sequential(nn.Conv2d(in_channels, 4, 3, 2), nn.BatchNorm2d(4), nn.GELU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, num_classes))
'''


@pytest.fixture
def mymod(tmp_path, monkeypatch):
    (tmp_path / "mymod.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mymod", None)
    return tmp_path


def test_command_line_on_a_model_the_package_does_not_define(mymod, tmp_path):
    env = os.environ | {"PYTHONPATH": f"{mymod}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "hessreg.report", "--model", "mymod:make", "--dataset", "fashion_mnist",
           "--samples", "32", "--probes", "2", "--eigs", "1", "--lanczos-steps", "3", "--device", "cpu",
           "--out", str(tmp_path / "out"), "--json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["meta"]["samples"] == 32 and out["meta"]["model"] == "mymod:make"
    assert {r["layer"] for r in out["traces"]} == {"1", "3", "5", "total"}
    acts = {r["layer"]: r for r in out["activations"]}
    assert acts["2"]["status"] == "counted" and acts["2"]["fraction"] > 0.99  # tanh'' ≠ 0 off 0
    assert acts["4"]["status"] == "unknown" and acts["4"]["fraction"] is None  # Swish: reported, not guessed
    table = pd.read_csv(tmp_path / "out" / "report.csv")
    assert set(table["quantity"]) == {"trace", "eigenvalue", "nonzero_d2", "seconds"}
    assert (tmp_path / "out" / "report.png").stat().st_size > 0
    bad = subprocess.run(cmd[:4] + ["nowhere_mod:make"] + cmd[5:], env=env, capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert bad.returncode == 2 and "does not import" in bad.stderr and "Traceback" not in bad.stderr


def test_clear_errors(mymod, tmp_path):
    tiny = dict(samples=16, probes=1, eigs=0, device="cpu")
    with pytest.raises(report.ReportError, match="has 10 classes but the model's head outputs"):
        report.report("mymod:seven", **tiny)
    torch.save(nn.Linear(3, 3).state_dict(), tmp_path / "w.pt")
    with pytest.raises(report.ReportError, match="do not fit the model"):
        report.report("mymod:make", weights=tmp_path / "w.pt", **tiny)
    with pytest.raises(report.ReportError, match="unknown model"):
        report.report("no-such-model", **tiny)
    with pytest.raises(report.ReportError, match="does not import"):
        report.report("mymod:nothing", **tiny)


def test_weights_batchnorm_and_torchvision_names(mymod, tmp_path):
    torch.manual_seed(0)
    net = report.load_model("mymod:conv", 10, 1, 28)
    torch.save(net.state_dict(), tmp_path / "conv.pt")
    for train_mode in (False, True):
        r = report.report("mymod:conv", weights=tmp_path / "conv.pt", samples=16, batch_size=8, probes=2, eigs=1,
                          lanczos_steps=3, train_mode=train_mode, device="cpu")
        assert r.meta["identity_residual"] < 1e-4 and r.activations["status"].tolist() == ["counted"]
    r = report.report("resnet18", samples=4, probes=1, eigs=0, device="cpu")  # grey images repeated to RGB
    assert len(r.traces) == 3 * (len(report.layer_groups(report.load_model("resnet18", 10, 3, 28))) + 1)


STEP = '''
from hessreg.methods import Hparam, Method, sam_step, sgd_step

calls = []

def every_second(model, x, y, loss_fn, rho=0.05, every=2):
    """SAM on every ``every``-th step, SGD otherwise."""
    calls.append(rho)
    if len(calls) % every == 0:
        return sam_step(model, x, y, loss_fn, rho)
    return sgd_step(model, x, y, loss_fn)

registered = Method("registered", every_second, {"rho": Hparam(0.05, 0.0), "every": Hparam(2, 1)})

def no_default(model, x, y, loss_fn, rho):
    return sgd_step(model, x, y, loss_fn)
'''


def test_own_method_runs_through_chapter_02_grid(tmp_path, monkeypatch):
    (tmp_path / "mymethods.py").write_text(STEP)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("mymethods", None)
    own = "mymethods:every_second"
    assert methods.check_method(own, {"rho": 0.1}) == {"rho": 0.1, "every": 2}
    assert methods.get_method("mymethods:registered").hparams["every"].low == 1
    with pytest.raises(ValueError, match="every must be ≥ 1"):
        methods.check_method("mymethods:registered", {"every": 0})
    with pytest.raises(ValueError, match="needs a bool, int or float default"):
        methods.get_method("mymethods:no_default")
    with pytest.raises(ValueError, match="cannot import"):
        Config(method="nowhere:step")
    params = chapters.load_params("02_sam_vs_psam", "smoke") | dict(
        train_size=256, test_size=128, epochs=1, batch_size=64, model="mlp-16x1", rhos=[0.1], device="cpu",
        activations=["relu"], methods=["sam", "psam", own])
    configs = chapters.configs("02_sam_vs_psam", params)
    df = sweep(configs, RecordStore(tmp_path / "store"), progress=False)
    assert len(df) == 4 and df.attrs["missing"] == 0 and own in set(df["method"])
    assert sys.modules["mymethods"].calls == [0.1] * 4  # 256 / 64 steps, SAM on steps 2 and 4
    labelled = plots.with_labels(df)
    assert labelled.loc[labelled["method"] == own, "method_label"].tolist() == [own]
    plots.curves(labelled, x="hp_rho", hue="method_label", col="activation_label")


def test_keys_of_existing_methods_do_not_change():
    """Every committed record is still found under its key (the keys are hashes of the canonical config)."""
    tracked = subprocess.run(["git", "ls-files", "results/records"], cwd=REPO, capture_output=True, text=True)
    paths = [REPO / p for p in tracked.stdout.split() if p.endswith(".json")][:200]
    if not paths:
        pytest.skip("no committed records")
    for path in paths:
        rec = json.loads(path.read_text())
        assert Config.from_dict(rec["config"]).key == rec["key"] == path.stem


def test_benchmark_runs(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_report.py"), "--model", "mlp-16x1",
                           "--train-size", "256", "--samples", "32", "--probes", "2", "--eigs", "1",
                           "--out", str(out)], env=env, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["report_over_epoch"] > 0 and result["threads"] == 1
    done = subprocess.run([sys.executable, str(REPO / "experiments" / "bench_report.py"), "--exact", "--hidden", "3",
                           "--samples", "8", "--out", str(out)], env=env, capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["params"] == result["products_per_curvature"] == 784 * 3 + 3 + 3 * 10 + 10
    assert result["traces"]["H total"] == pytest.approx(result["traces"]["G total"] + result["traces"]["N total"])
    assert result["chunk_mib"] < result["old_identity_mib"] and result["peak_rss_mib_after"] > 0
