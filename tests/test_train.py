"""One run: config validation (one clear error before any training), determinism, divergence as a result."""
import math

import warnings

import pytest
import torch

import hessreg as hr
from hessreg import provenance, train

TINY = dict(train_size=256, test_size=128, model="mlp-32x1", epochs=2, batch_size=64, lr=0.05, device="cpu",
            augment=False)


def test_record_fields_and_learning():
    r = hr.run(hr.Config(**TINY))
    assert [h["epoch"] for h in r.history] == [1, 2]
    assert set(r.history[0]) == {"epoch", "train_loss", "train_acc", "lr", "time_s", "penalty", "penalty_sd",
                                 "penalty_steps"}
    assert r.history[0]["penalty"] is None and r.history[0]["penalty_steps"] == 0  # SGD has no regularizer
    assert r.history[1]["train_loss"] < r.history[0]["train_loss"]
    assert 0.3 < r.test_acc <= 1 and r.test_loss > 0 and not r.diverged and r.wall_time_s > 0
    assert {"commit", "torch", "device", "python"} <= set(r.provenance) and r.provenance["device"] == "cpu"
    assert r.key == hr.Config(**TINY).key and hr.Config.from_dict(r.config) == hr.Config(**TINY)


def test_same_seed_same_record_on_cpu():
    a, b = hr.run(hr.Config(**TINY, seed=3)), hr.run(hr.Config(**TINY, seed=3))
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_s"} for e in h]
    assert strip(a.history) == strip(b.history) and a.test_acc == b.test_acc and a.test_loss == b.test_loss
    c = hr.run(hr.Config(**TINY, seed=4))
    assert strip(c.history) != strip(a.history)


def test_divergence_is_recorded_not_raised():
    r = hr.run(hr.Config(**TINY | dict(lr=1e6, schedule="constant", weight_decay=0.0, epochs=5)))
    assert r.diverged and r.diverged_at["epoch"] <= 5 and len(r.history) < 5
    d = r.to_dict()  # strict JSON: no NaN
    assert d["test_loss"] is None or math.isfinite(d["test_loss"])


@pytest.mark.parametrize("field,value,match", [
    ("dataset", "mnist", "valid choices: fashion_mnist"),
    ("model", "vgg", "valid forms"),
    ("activation", "swish", "valid choices: .*gelu"),
    ("method", "adahessian", "valid choices: .*sgd"),
    ("optimizer", "lbfgs", "valid choices: sgd, adam"),
    ("schedule", "linear", "valid choices: constant"),
    ("epochs", 0, "epochs must be ≥ 1"),
    ("batch_size", 0, "batch_size must be ≥ 1"),
    ("lr", -0.1, "lr > 0"),
    ("beta", 0.0, "beta > 0"),
    ("hparams", {"rho": 0.1}, "no hyperparameter"),
    ("train_size", 10, "no full batch"),
    ("device", "tpu", "valid choices: auto, cpu, cuda"),
])
def test_bad_config_one_clear_error(field, value, match):
    kw = TINY | {field: value}
    if field == "beta":
        kw["activation"] = "beta_gelu"
    with pytest.raises(ValueError, match=match):
        hr.Config(**kw)


@pytest.mark.parametrize("field,value", [("epochs", "2"), ("lr", "0.1"), ("augment", 1), ("seed", 1.5),
                                         ("train_size", 100.0), ("model", 3)])
def test_wrong_types_are_named(field, value):
    with pytest.raises(TypeError, match=f"Config.{field} must be"):
        hr.Config(**TINY | {field: value})


def test_key_is_canonical():
    base = hr.Config(**TINY)
    assert base.key == base.replace(device="auto").key  # where it runs is not what it computes
    assert base.key == base.replace(beta=7.0).key  # ReLU has no β
    assert base.key != base.replace(activation="beta_gelu", beta=7.0).key
    assert base.key != base.replace(seed=1).key != base.replace(lr=0.01).key
    assert base.replace(schedule="cosine").key == base.replace(step_epochs=3).key  # step fields unused
    assert len(base.key) == 16


def test_lr_schedules():
    c = hr.Config(**TINY | dict(epochs=10))
    assert train.lr_factor(c, 0, 10) == 1.0 and abs(train.lr_factor(c, 100, 10)) < 1e-12
    oc = c.replace(schedule="onecycle")
    assert train.lr_factor(oc, 0, 10) == 0 and train.lr_factor(oc, 20, 10) == 1.0
    st = c.replace(schedule="step", step_epochs=3, step_gamma=0.1)
    assert [round(train.lr_factor(st, s * 10, 10), 12) for s in (0, 2, 3, 6, 9)] == [1, 1, 0.1, 0.01, 0.001]


def test_penalty_estimates_are_logged_per_epoch():
    r = hr.run(hr.Config(**TINY | dict(method="psam", hparams={"rho": 0.05})))
    assert all(h["penalty"] > 0 for h in r.history)  # PSAM's ‖∇L‖, averaged over each epoch
    steps = r.config["train_size"] // r.config["batch_size"]  # every step's estimate enters the epoch's spread
    assert all(h["penalty_steps"] == steps and h["penalty_sd"] > 0 for h in r.history)


def test_validation_split_and_measurements():
    c = hr.Config(**TINY | dict(val_size=100, activation="beta_gelu", beta=100.0, measure=["nonzero_d2"]))
    assert c.measure == ("nonzero_d2",) and c.key != c.replace(measure=()).key
    r = hr.run(c)
    assert 0 < r.val_acc <= 1 and r.val_loss > 0
    (init,), (final,) = ([m for m in r.metrics if m["when"] == w] for w in ("init", "final"))
    assert init["name"] == final["name"] == "nonzero_d2" and init["value"]["threshold"] == 0.0
    assert 0 < final["value"]["total"] < 1 and set(final["value"]["per_layer"]) == set(init["value"]["per_layer"])
    from hessreg import data
    ds = data.load("fashion_mnist", 256, 128, "cpu", val_size=100)
    assert len(ds.y_val) == 100 and ds.num_train == 256
    with pytest.raises(ValueError, match="valid choices: nonzero_d2"):
        hr.Config(**TINY | dict(measure=["hessian"]))
    with pytest.raises(ValueError, match="unknown init"):
        hr.Config(**TINY | dict(init="nowhere:abc"))


def test_fields_added_later_do_not_change_old_keys():
    c = hr.Config(**TINY)
    assert "val_size" not in c.canonical() and "init" not in c.canonical() and "measure" not in c.canonical()


def test_diverged_runs_skip_final_measurements():
    r = hr.run(hr.Config(**TINY | dict(lr=1e6, schedule="constant", weight_decay=0.0, epochs=5,
                                       activation="beta_gelu", beta=10.0, measure=["nonzero_d2"])))
    assert r.diverged
    assert [m["value"] is None for m in r.metrics] == [False, True]  # init measured, final not
    from hessreg import results
    assert list(results.metrics_frame([r])["when"]) == ["init"]


def test_best_validation_checkpoint():
    c = hr.Config(**TINY | dict(val_size=100, epochs=4, checkpoint="best_val"))
    r = hr.run(c)
    accs = [h["val_acc"] for h in r.history]
    assert r.selected_epoch == 1 + accs.index(max(accs))
    assert r.val_acc == max(accs)  # the restored weights are the selected epoch's
    assert c.key != c.replace(checkpoint="final").key and "checkpoint" not in hr.Config(**TINY).canonical()
    with pytest.raises(ValueError, match="needs a validation split"):
        hr.Config(**TINY | dict(checkpoint="best_val"))
    with pytest.raises(ValueError, match="valid choices: final, best_val"):
        hr.Config(**TINY | dict(val_size=100, checkpoint="best"))


@pytest.mark.parametrize("field,value,match", [
    ("lr", math.inf, "lr must be a finite number with lr > 0, got inf"),
    ("lr", math.nan, "lr must be a finite number with lr > 0, got nan"),
    ("weight_decay", math.nan, "weight_decay must be a finite number with weight_decay ≥ 0, got nan"),
    ("weight_decay", math.inf, "weight_decay must be a finite number"),
    ("momentum", math.inf, "momentum must be a finite number with 0 ≤ momentum < 1, got inf"),
    ("step_gamma", math.nan, "step_gamma must be a finite number"),
    ("beta", math.inf, "beta must be a finite number, got inf"),
    ("seed", 2 ** 64, "seed must be in"),
    ("model", "wrn-11-2", "'wrn-11-2': WideResNet depth must be 6n \\+ 4 .* got 11"),
    ("model", "wrn-4-2", "WideResNet depth must be 6n \\+ 4 with n ≥ 1"),
    ("model", "wrn-16-0", "WideResNet width must be ≥ 1, got 0"),
    ("model", "mlp-0x2", "'mlp-0x2': an MLP needs width ≥ 1 and depth ≥ 1 .* got width 0, depth 2"),
    ("model", "mlp-16x0", "an MLP needs width ≥ 1 and depth ≥ 1"),
])
def test_non_finite_numbers_and_impossible_models_are_refused(field, value, match):
    with pytest.raises(ValueError, match=match):
        hr.Config(**TINY | {field: value})


def test_non_finite_hyperparameters_are_refused():
    with pytest.raises(TypeError, match="sam: rho must be a finite number, got inf"):
        hr.Config(**TINY | dict(method="sam", hparams={"rho": math.inf}))


@pytest.mark.parametrize("method", ["nso", "gn_psam"])
def test_a_committed_record_reruns_to_the_same_numbers(method, one_thread):
    """The committed records are the book's evidence, and refactors of the steps and the loop must keep them.
    Rerunning one (one thread, as its provenance says) must give the same history and results bit for bit where
    its bits can be promised — this machine's signature (torch, BLAS, CPU model and instruction sets, ATen's CPU
    capability, threads) equals the record's or an attested one — and within ``provenance.TOLERANCE`` elsewhere
    (another CPU, or ATEN_CPU_CAPABILITY=avx2). The case checked is reported as a warning."""
    from hessreg.results import store_for
    record = min((r for r in store_for("cpu") if r.config["method"] == method), key=lambda r: r.key)
    assert record.provenance["threads"] == 1
    case, why = provenance.bits_case(record.provenance, provenance.attested(record.key))
    again = train.run(hr.Config.from_dict(record.config))
    diff = provenance.differences(record, again)
    warnings.warn(provenance.RerunCase(f"{method} record {record.key}: {case} check ({why}); identical: "
                                       f"{diff['identical']}, test accuracy {diff['test_acc_pp']:.2f} pp apart"))
    if case == "bitwise":
        assert diff["identical"], diff
    assert not provenance.within_tolerance(diff), diff
    if record.config.get("init"):  # a fine-tuning run names the committed backbone it started from
        assert again.provenance["init_sha256"] == train.pretrain_record(record.config["init"])["weights_sha256"]


def test_bits_case_from_signatures(monkeypatch):
    """Bitwise only where every field of the signature agrees; a record without one is 'close' with the reason."""
    here = provenance.provenance(torch.device("cpu"))
    assert provenance.bits_case(here) == ("bitwise", "this machine's signature equals the record's")
    old = {k: v for k, v in here.items() if k not in ("cpu_capability", "cpu_isa", "cpu_model", "blas", "isa_env")}
    case, why = provenance.bits_case(old)
    assert case == "close" and "names no CPU capability" in why
    assert provenance.bits_case(old, [provenance.signature(here)])[0] == "bitwise"  # attested here
    for field, other in (("cpu_capability", "DEFAULT"), ("threads", here["threads"] + 1), ("cpu_isa", ["sse2"]),
                         ("torch", "0.1"), ("isa_env", {"ATEN_CPU_CAPABILITY": "default"})):  # none what runs here
        case, why = provenance.bits_case(here | {field: other})
        assert case == "close" and why.startswith(f"{field} differs"), (field, why)
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")  # read by provenance: another dispatch, another machine
    assert provenance.bits_case(here)[0] == "close"


def test_rerun_differences_and_tolerance():
    r = hr.run(hr.Config(**TINY))
    same = provenance.differences(r, r)
    assert same["identical"] and same["first_differing_epoch"] is None and not provenance.within_tolerance(same)
    import dataclasses
    h = [dict(e) for e in r.history]
    h[1]["train_loss"] *= 1.01
    moved = dataclasses.replace(r, history=h, test_acc=r.test_acc - 0.02)
    d = provenance.differences(r, moved)
    assert not d["identical"] and d["first_differing_epoch"] == 2 and d["first_epoch_train_loss_rel"] == 0
    assert d["test_acc_pp"] == pytest.approx(2.0) and provenance.within_tolerance(d) == ["test_acc_pp = 2 > 1.5"]


def test_attestations_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "attestations_dir", lambda: tmp_path)
    here = provenance.provenance(torch.device("cpu"))
    assert provenance.attested("abc") == []
    provenance.attest("abc", here)
    provenance.attest("abc", here)  # once per signature
    assert provenance.attested("abc") == [provenance.signature(here)]


def test_channels_last_trains_the_same_convnet_in_another_rounding(one_thread):
    """memory_format='channels_last' is the same computation in another float rounding: its own key (the default
    leaves every stored key where it was), channels_last weights, and results close to NCHW's."""
    nchw = hr.Config(**TINY | dict(model="cnn-4-8-16-bn", activation="gelu", method="psam"))
    cl = nchw.replace(memory_format="channels_last")
    assert "memory_format" not in nchw.canonical() and cl.key != nchw.key
    a, (b, model) = train.run(nchw), train.run(cl, return_model=True)
    conv = [p for p in model.parameters() if p.dim() == 4][-1]  # the second convolution: more than one input channel
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    for ea, eb in zip(a.history, b.history):
        assert ea["train_loss"] == pytest.approx(eb["train_loss"], rel=1e-4)
    assert abs(a.test_acc - b.test_acc) <= 1 / 128  # at most one of the 128 test images flips
