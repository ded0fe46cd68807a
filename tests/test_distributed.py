"""Data-parallel readiness: two gloo processes on CPU train the same model as one process with the same global
batch (each rank sees half of every batch; gradients are averaged)."""
import json
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import hessreg as hr

CONFIG = dict(train_size=256, test_size=64, model="mlp-16x1", epochs=2, batch_size=64, lr=0.05, device="cpu",
              augment=False, weight_decay=0.0)


def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    record = hr.run(hr.Config(**CONFIG))
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"history": record.history, "test_acc": record.test_acc}, f)
    dist.destroy_process_group()


def test_two_ranks_match_one_process(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(2, port, str(tmp_path / "rank")), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank.{r}").read_text()) for r in range(2)]
    single = hr.run(hr.Config(**CONFIG))
    assert ranks[0]["test_acc"] == ranks[1]["test_acc"]
    # the mean of two half-batch mean-losses is the full-batch mean loss: same trajectory up to float rounding
    for a, b in zip(ranks[0]["history"], single.history):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and a["train_acc"] == b["train_acc"]
    assert abs(ranks[0]["test_acc"] - single.test_acc) <= 1 / 64


def test_torchrun_sweep_writes_the_single_process_records(tmp_path):
    """`torchrun --nproc_per_node 2 experiments/sweep.py …` (gloo on CPU): rank 0 alone writes, and the records
    equal a single process's to float tolerance — for SGD and for NSO, whose noise every rank draws from the same
    seeded generator, so the ranks' half-batch gradients at θ ± U average to the full batch's."""
    import subprocess
    import sys
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    overrides = ["seeds=[0]", "train_size=256", "init=null", "epochs=2", "methods=[nso]",
                 "sigmas=[0.01]", "model=mlp-16x1", "device=cpu"]
    args = ["12_nso_accuracy", "--scale", "smoke"] + [a for o in overrides for a in ("--set", o)]
    torchrun = Path(sys.executable).parent / "torchrun"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for name, cmd in (("two", [str(torchrun), "--standalone", "--nproc_per_node", "2"]),
                      ("one", [sys.executable])):
        subprocess.run(cmd + [str(repo / "experiments" / "sweep.py")] + args, check=True, cwd=repo,
                       env=env | {"HESSREG_STORE": str(tmp_path / name)}, capture_output=True, text=True)
    two, one = (sorted((tmp_path / n).glob("*.json")) for n in ("two", "one"))
    assert [p.name for p in two] == [p.name for p in one] and len(one) == 2  # the plain optimizer and NSO
    for a, b in zip(two, one):
        ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
        assert abs(ra["test_acc"] - rb["test_acc"]) <= 2 / 797 and abs(ra["val_acc"] - rb["val_acc"]) <= 2 / 200
        for ha, hb in zip(ra["history"], rb["history"]):
            assert abs(ha["train_loss"] - hb["train_loss"]) < 1e-3
