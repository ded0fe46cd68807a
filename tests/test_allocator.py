"""Freed memory kept in the process (hessreg.allocator): fewer page faults per step, the same numbers.

Each case runs in a fresh interpreter, since glibc's thresholds, once set, stay set for the process. That the
committed records still rerun bit for bit with the thresholds raised is tests/test_train.py's record reruns:
``train.run`` raises them, and the records were trained with glibc's defaults."""
import json
import os
import platform
import subprocess
import sys

import pytest

STEPS = """
import json, resource, sys, torch
from torch.nn import functional as F
from hessreg import allocator
from hessreg.models import build_model
torch.set_num_threads(1)
retained = allocator.retain_freed_memory() if sys.argv[1] == "retained" else False
torch.manual_seed(0)
model = build_model("cnn-16-32-128-bn", 10, 1, 28, "gelu").train()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))

def step():
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    opt.step()

def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

for _ in range(3):
    step()
per_step = []
for _ in range(9):  # the median step: a step that still grows the heap faults either way
    before = faults()
    step()
    per_step.append(faults() - before)
print(json.dumps({"retained": retained, "faults": sorted(per_step)[4], "total": sum(per_step),
                  "weights": [float(p.double().sum()) for p in model.parameters()]}))
"""


def _python(code: str, *args: str, env: dict | None = None):
    """The last line of ``code``'s output as JSON, run in a fresh interpreter without the caller's malloc settings."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                         env=clean | (env or {}))
    return json.loads(out.stdout.splitlines()[-1])


def _glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


@pytest.fixture(scope="module")
def steps():
    return {mode: _python(STEPS, mode) for mode in ("glibc", "retained")}


def test_the_thresholds_are_set_on_glibc(steps):
    assert steps["retained"]["retained"] is _glibc()
    assert steps["glibc"]["retained"] is False


def test_kept_memory_spares_the_page_faults_of_each_step(steps):
    """glibc's defaults map and zero-fill thousands of pages over a few convnet SGD steps (15,000–68,000 over 9 in
    24 processes here); with freed memory kept, a step that does not grow the heap faults on no page."""
    glibc, kept = steps["glibc"], steps["retained"]
    assert glibc["total"] > 5000, glibc  # the defaults fault: there is something to spare
    assert kept["faults"] == 0, kept  # the median step
    assert kept["total"] < glibc["total"] / 3, (kept, glibc)


def test_kept_memory_changes_no_number(steps):
    assert steps["retained"]["weights"] == steps["glibc"]["weights"]


def test_the_users_own_malloc_settings_are_left_alone():
    code = "import json; from hessreg import allocator; print(json.dumps(allocator.retain_freed_memory()))"
    assert _python(code) is _glibc()
    assert _python(code, env={"MALLOC_TRIM_THRESHOLD_": "131072"}) is False
    assert _python(code, env={"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=131072"}) is False


def test_the_layout_benchmark_trains_the_same_records_under_both_allocators(tmp_path):
    """bench_layout.py alternates its variants on one sample and compares the records they trained: identical
    across allocators, close but not identical in another memory format."""
    from pathlib import Path
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "layout.json"
    subprocess.run([sys.executable, str(repo / "experiments" / "bench_layout.py"), "--scale", "smoke", "--every",
                    "60", "--epochs", "1", "--layouts", "1x1", "--variants", "glibc,retained,retained+channels_last",
                    "--out", str(out)],
                   cwd=repo, check=True, capture_output=True, text=True, timeout=600)
    entry = json.loads(out.read_text())["layouts"]["1x1"]
    assert set(entry["variants"]) == {"glibc", "retained", "retained+channels_last"}
    same, other = entry["records"]["retained"], entry["records"]["retained+channels_last"]
    assert same["records"] >= 1 and same["all_identical"] and same["same_memory_format"], same
    assert not other["same_memory_format"] and other["max_first_epoch_train_loss_rel"] < 1e-3, other
    for metric in ("runs_per_hour", "runs_per_hour_busy"):
        assert set(entry[f"speedup_{metric}"]) == {"retained", "retained+channels_last"}
