"""What decides a run's bits, recorded with every run, and whether a rerun here can promise the same bits.

A float32 training run is a deterministic function of its config *and* of the kernels that compute it. On a CPU
those are chosen at run time: ATen's vectorised kernels by the CPU capability it dispatches to
(``torch.backends.cpu.get_cpu_capability()``, lowered by ``ATEN_CPU_CAPABILITY``), MKL's GEMMs and oneDNN's
convolutions by the instruction sets the CPU reports (and by ``MKL_ENABLE_INSTRUCTIONS`` / ``ONEDNN_MAX_CPU_ISA``),
and reductions by the thread count. Two machines with the same torch build can therefore round differently, and a
20-epoch run amplifies one rounding difference into a different trajectory. On CUDA: the GPU, the CUDA and cuDNN
builds and the TF32 switches.

:func:`signature` is the part of a record's provenance that decides its bits. :func:`bits_case` compares a
record's signature with this machine's: ``"bitwise"`` when every field agrees (a rerun must give the same
numbers), ``"close"`` when a field differs or the record predates signatures (a rerun can only be close, within
a tolerance measured for that purpose). A record whose bits were since reproduced exactly on a machine is
*attested* for that machine's signature (``results/reruns/<key>.json``, written by ``experiments/rerun.py
--attest``): the record is never edited, the attestation says where its bits hold.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import socket
import sys
import time
from pathlib import Path

import torch

from .repo import git_commit, root, write_atomic

# CPU flags (/proc/cpuinfo) that select MKL's and oneDNN's code paths; the rest of the flag list never does.
ISA_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "avx_vnni")
# Environment variables that lower the instruction set a library dispatches to.
ISA_ENV = ("ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
CPU_SIGNATURE = ("torch", "blas", "cpu_model", "cpu_isa", "cpu_capability", "isa_env", "threads")
CUDA_SIGNATURE = ("torch", "cuda", "cudnn", "device", "tf32")


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, tuple[str, ...]]:
    """The CPU's model name and which of :data:`ISA_FLAGS` it reports (Linux; elsewhere platform's name)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name" and model in ("", platform.machine(), platform.processor()):
                model = value.strip()
            elif name.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, tuple(f for f in ISA_FLAGS if f in flags)


def _blas() -> str:
    """The BLAS/LAPACK torch was built with, and MKL's and oneDNN's versions (from ``torch.__config__``)."""
    show = torch.__config__.show()
    info = [part.split("=", 1)[1] for part in show.replace(",", "\n").split() if part.startswith("BLAS_INFO=")]
    versions = [line.strip(" -") for line in show.splitlines()
                if "Math Kernel Library Version" in line or "MKL-DNN v" in line]
    return "; ".join(info[:1] + [v.split(" for ")[0] for v in versions])


def provenance(device: torch.device, **extra) -> dict:
    """Where and how a run was computed: commit, versions, host, time, and every field of :func:`signature`
    (the CPU's model, instruction sets and ATen capability, BLAS build, threads; on CUDA the GPU and TF32)."""
    model, isa = _cpuinfo()
    p = {
        "commit": git_commit(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "python": ".".join(map(str, sys.version_info[:3])),
        "hostname": socket.gethostname(),
        "threads": torch.get_num_threads(),  # CPU results move by ~0.2 pt between 1 and 2 threads
        "cpu_model": model,
        "cpu_isa": list(isa),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_env": {k: os.environ[k] for k in ISA_ENV if k in os.environ},
        "blas": _blas(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if device.type == "cuda":
        p |= {"cudnn": torch.backends.cudnn.version(),
              "tf32": {"matmul": torch.backends.cuda.matmul.allow_tf32, "cudnn": torch.backends.cudnn.allow_tf32}}
    return p | extra


def signature(prov: dict) -> dict | None:
    """The fields of a provenance that decide a run's bits, or None when the record predates them (it names no
    CPU capability): such a record's bits cannot be promised anywhere."""
    keys = CUDA_SIGNATURE if prov.get("device", "cpu") != "cpu" else CPU_SIGNATURE
    if prov.get("device", "cpu") == "cpu" and "cpu_capability" not in prov:
        return None
    return {k: _canonical(prov.get(k)) for k in keys}


def _canonical(value):
    return tuple(value) if isinstance(value, list) else tuple(sorted(value.items())) if isinstance(value, dict) \
        else value


def here(device: str | torch.device = "cpu") -> dict:
    """This process's signature (the thread count as it is set now)."""
    return signature(provenance(torch.device(device)))


def bits_case(prov: dict, attested: list[dict] = (), device: str = "cpu") -> tuple[str, str]:
    """``("bitwise", why)`` if a rerun here must reproduce a record with provenance ``prov`` bit for bit — its
    signature, or one of the ``attested`` signatures where its bits were reproduced, equals this machine's —
    else ``("close", why)``, naming the first field that differs or saying the record predates signatures."""
    mine = here(device)
    candidates = [s for s in [signature(prov), *attested] if s is not None]
    if not candidates:
        return "close", "the record names no CPU capability (made before signatures were recorded)"
    for sig in candidates:
        if sig == mine:
            return "bitwise", "this machine's signature equals the record's" if sig == signature(prov) else \
                "this machine's signature equals one where the record's bits were reproduced (attested)"
    sig = candidates[0]
    field = next(k for k in sig if sig[k] != mine.get(k))
    return "close", f"{field} differs: {sig[field]!r} in the record, {mine.get(field)!r} here"


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file (a committed backbone's identity, named in the provenance of runs that load it)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------------------------- reproducing a record

# How close a rerun elsewhere must come (``"close"``), measured by rerunning committed records of every method
# family under ATEN_CPU_CAPABILITY=avx2 against the default AVX-512 on one machine (README, "Reproducing a
# record"): the first epoch's training loss, before chaos amplifies a rounding difference, and the final
# accuracies, which a different rounding moves like a different seed would.
TOLERANCE = {"first_epoch_train_loss_rel": 1e-3, "test_acc_pp": 1.5, "val_acc_pp": 2.0}


class RerunCase(UserWarning):
    """Which check a rerun of a committed record got (bitwise or within tolerance) and why: tests report it."""


def differences(record, again) -> dict:
    """How a rerun ``again`` differs from ``record`` (both :class:`hessreg.config.Record`): whether the histories
    (times aside) and final metrics are identical, the first epoch's relative training-loss difference, the
    final accuracies' differences in pp, and the first epoch whose entries differ."""
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_s"} for e in h]  # noqa: E731
    a, b = strip(record.history), strip(again.history)
    first = next((i + 1 for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else
                 min(len(a), len(b)) + 1)
    pp = lambda x, y: None if x is None or y is None else 100 * abs(x - y)  # noqa: E731
    loss0 = (abs(a[0]["train_loss"] - b[0]["train_loss"]) / abs(a[0]["train_loss"])) if a and b else None
    return {"identical": a == b and (record.test_acc, record.test_loss, record.val_acc, record.diverged)
            == (again.test_acc, again.test_loss, again.val_acc, again.diverged),
            "first_differing_epoch": first, "first_epoch_train_loss_rel": loss0,
            "test_acc_pp": pp(record.test_acc, again.test_acc), "val_acc_pp": pp(record.val_acc, again.val_acc),
            "diverged": (record.diverged, again.diverged)}


def within_tolerance(diff: dict, tolerance: dict = TOLERANCE) -> list[str]:
    """The entries of :func:`differences` beyond ``tolerance`` (empty: close enough), and a divergence that one
    run shows and the other does not."""
    bad = [f"{k} = {diff[k]:.3g} > {t:g}" for k, t in tolerance.items() if diff.get(k) is not None and diff[k] > t]
    if diff["diverged"][0] != diff["diverged"][1]:
        bad.append(f"diverged {diff['diverged'][0]} in the record, {diff['diverged'][1]} in the rerun")
    return bad


def attestations_dir() -> Path:
    """``<root>/results/reruns``: where a record's bits were reproduced exactly (one JSON file per record key)."""
    return root() / "results" / "reruns"


def attested(key: str) -> list[dict]:
    """The signatures of machines on which record ``key`` was rerun bit for bit."""
    path = attestations_dir() / f"{key}.json"
    if not path.exists():
        return []
    return [{k: _canonical(v) for k, v in a["signature"].items()} for a in json.loads(path.read_text())["reruns"]]


def attest(key: str, prov: dict) -> Path:
    """Add this machine (provenance ``prov`` of a rerun that was identical) to record ``key``'s attestations."""
    path = attestations_dir() / f"{key}.json"
    entries = json.loads(path.read_text())["reruns"] if path.exists() else []
    sig = {k: prov.get(k) for k in signature(prov)}  # as the provenance spells them (lists, dicts: JSON)
    if all(a["signature"] != sig for a in entries):
        entries.append({"signature": sig, "commit": prov.get("commit"), "date": prov.get("finished")})
    write_atomic(path, json.dumps({"key": key, "reruns": entries}, indent=1, sort_keys=True))
    return path
