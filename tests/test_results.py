"""The record store and the sweep: atomic writes, resume after a kill, no mixing of configs, read-only use."""
import json
import os

import pytest

import hessreg as hr
from hessreg import results, sweep
from hessreg.sweep import grid

TINY = hr.Config(train_size=128, test_size=64, model="mlp-16x1", epochs=1, batch_size=64, device="cpu",
                 augment=False)


def test_put_get_roundtrip(tmp_path):
    store = hr.RecordStore(tmp_path)
    r = hr.run(TINY)
    store.put(r)
    assert TINY in store and len(store) == 1
    back = store.get(TINY)
    assert back.to_dict() == r.to_dict()
    assert store.get(TINY.replace(seed=9)) is None


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "x.json"
    results.write_atomic(path, "old")
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError("disk died")))
    with pytest.raises(OSError):
        results.write_atomic(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_store_refuses_a_record_under_another_key(tmp_path):
    store = hr.RecordStore(tmp_path)
    store.put(hr.run(TINY))
    other = TINY.replace(seed=5)
    os.rename(store.path(TINY), store.path(other))
    with pytest.raises(ValueError, match="not"):
        store.get(other)


def test_sweep_resumes_after_interruption_with_nothing_lost(tmp_path, monkeypatch):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1, 2])
    calls = []
    real_run = sweep.run

    def dying_run(config):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed during the third run
        calls.append(config.seed)
        return real_run(config)

    monkeypatch.setattr(sweep, "run", dying_run)
    with pytest.raises(KeyboardInterrupt):
        sweep.sweep(configs, store, progress=False)
    assert len(store) == 2 and not list(tmp_path.glob(".*tmp"))
    monkeypatch.setattr(sweep, "run", lambda c: calls.append(c.seed) or real_run(c))
    df = sweep.sweep(configs, store, progress=False)
    assert calls == [0, 1, 2] and len(df) == 3 and sorted(df["seed"]) == [0, 1, 2]
    monkeypatch.setattr(sweep, "run", lambda c: pytest.fail("a stored run was retrained"))
    assert len(sweep.sweep(configs, store, progress=False)) == 3


def test_grid_axes_and_hparams_and_validation_before_training(tmp_path):
    configs = grid(TINY, activation=["relu", "gelu"], seed=[0, 1])
    assert len(configs) == 4 and {c.activation for c in configs} == {"relu", "gelu"}
    with pytest.raises(ValueError, match="no hyperparameter"):
        grid(TINY, rho=[0.1])  # sgd has no rho: fails while building the grid
    with pytest.raises(TypeError, match="list of values"):
        grid(TINY, seed=3)
    assert len(list(tmp_path.iterdir())) == 0


def test_sweep_read_only_and_frame(tmp_path):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1])
    df = sweep.sweep(configs, store, train=False, progress=False)
    assert df.empty and df.attrs["missing"] == 2
    sweep.sweep(configs[:1], store, progress=False)
    df = sweep.sweep(configs + configs, store, train=False, progress=False)  # duplicates collapse
    assert len(df) == 1 and df.attrs["missing"] == 1
    assert {"test_acc", "seed", "activation", "commit", "diverged", "key"} <= set(df.columns)


def test_sharded_sweeps_split_the_work(tmp_path):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1, 2])
    sweep.sweep(configs, store, shard=(0, 2), progress=False)
    assert len(store) == 2
    sweep.sweep(configs, store, shard=(1, 2), progress=False)
    assert len(store) == 3
    with pytest.raises(ValueError, match="shard"):
        sweep.sweep(configs, store, shard=(2, 2))


def test_stored_json_is_strict(tmp_path):
    store = hr.RecordStore(tmp_path)
    path = store.put(hr.run(TINY))
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
