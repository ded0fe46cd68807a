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
