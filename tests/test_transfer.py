"""Paper B's fine-tuning setting across the modules that hold it: the digits stand-in and image folders with a
validation split (hessreg.data), initial weights (hessreg.config specs, loaded and cached by hessreg.train, backbones
by hessreg.models), the NSO grids (hessreg.chapters), and the flatness measurement (hessreg.estimators) against the
dense oracle."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hessreg as hr
from hessreg import chapters, config, data, estimators, models, provenance, train
from tests.oracle import Dense

PRE = dict(dataset="fashion_mnist", model="mlp-16x1", epochs=1, train_size=256, batch_size=64, augment=False)


# ------------------------------------------------------------------------------------------------ digits

def test_digits_loader_shapes_split_and_normalisation():
    xtr, ytr, xte, yte = data.load_digits_arrays()
    assert xtr.shape == (1797 - data.DIGITS_TEST, 28, 28) and xte.shape == (data.DIGITS_TEST, 28, 28)
    assert 0 <= xtr.min() and xtr.max() <= 255 and xtr.max() > 200  # 0–16 grey levels on the 0–255 scale
    assert set(ytr) == set(yte) == set(range(10))
    ds = data.load("digits", val_size=200)
    assert ds.x_train.shape == (800, 1, 28, 28) and ds.x_val.shape == (200, 1, 28, 28)
    assert ds.x_test.shape == (data.DIGITS_TEST, 1, 28, 28) and ds.num_classes == 10
    assert abs(ds.x_train.mean().item()) < 1e-4 and abs(ds.x_train.std().item() - 1) < 1e-3
    small = data.load("digits", train_size=256, val_size=200)
    assert small.num_train == 256 and torch.equal(small.y_val, ds.y_val)  # the validation split is fixed
    again = data.load_digits_arrays()
    assert np.array_equal(again[3], yte) and np.array_equal(again[2], xte)  # the test split is fixed


# ------------------------------------------------------------------------------------ cached pretraining

def test_pretraining_runs_once_and_is_cached_atomically(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSREG_WEIGHTS", str(tmp_path))
    calls = []
    real_run = train.run
    monkeypatch.setattr(train, "run", lambda c, **kw: calls.append(c) or real_run(c, **kw))
    spec = config.pretrain_spec(**PRE)
    assert spec.startswith("pretrain:") and 'model="mlp-16x1"' in spec
    first, digest = train.pretrained(spec, torch.device("cpu"))
    assert len(calls) == 1 and calls[0].method == "sgd" and calls[0].dataset == "fashion_mnist"
    key = config.pretrain_config(spec).key
    assert (tmp_path / f"{key}.pt").exists() and train.pretrain_record(spec)["test_acc"] > 0.3
    assert train.pretrain_record(spec)["weights_sha256"] == digest == provenance.sha256(tmp_path / f"{key}.pt")
    assert not list(tmp_path.glob(".*.tmp"))
    second, again = train.pretrained(spec, torch.device("cpu"))
    assert len(calls) == 1 and again == digest  # loaded, not retrained
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_a_committed_backbone_is_used_and_checked(tmp_path, monkeypatch):
    """A backbone under results/weights is loaded from there (never retrained), its SHA-256 checked against its
    record, and named in the provenance of the runs fine-tuned from it; altered bytes are refused."""
    monkeypatch.setenv("HESSREG_WEIGHTS", str(tmp_path / "cache"))
    spec = config.pretrain_spec(**PRE)
    state, digest = train.pretrained(spec, torch.device("cpu"))  # trained into the cache
    committed = tmp_path / "committed"
    monkeypatch.setattr(train, "committed_weights_dir", lambda: committed)
    key = config.pretrain_config(spec).key
    committed.mkdir()
    for suffix in (".pt", ".json"):
        (committed / f"{key}{suffix}").write_bytes((tmp_path / "cache" / f"{key}{suffix}").read_bytes())
    monkeypatch.setattr(train, "run", lambda *a, **k: pytest.fail("a committed backbone was retrained"))
    assert train.pretrained(spec, "cpu")[1] == digest
    blob = bytearray((committed / f"{key}.pt").read_bytes())
    blob[-10] ^= 1
    (committed / f"{key}.pt").write_bytes(bytes(blob))
    with pytest.raises(train.BackboneError, match="SHA-256"):
        train.pretrained(spec, "cpu")


def test_fine_tuning_is_reproducible_whether_or_not_pretraining_ran_inside_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSREG_WEIGHTS", str(tmp_path))
    c = hr.Config(dataset="digits", train_size=128, val_size=100, model="mlp-16x1", optimizer="amsgrad", lr=1e-3,
                  schedule="step", step_epochs=1, epochs=2, batch_size=32, augment=False, device="cpu",
                  method="nso", hparams={"sigma": 0.01}, init=config.pretrain_spec(**PRE))
    a = hr.run(c)  # pretrains inside the run
    b = hr.run(c)  # loads the cache
    assert a.test_acc == b.test_acc and a.val_acc == b.val_acc and a.val_acc is not None
    assert [h["train_loss"] for h in a.history] == [h["train_loss"] for h in b.history]


def test_pretrain_spec_errors():
    with pytest.raises(ValueError, match="cannot be set"):
        config.pretrain_spec(init="imagenet:resnet34")
    with pytest.raises(ValueError, match="unknown model"):
        config.check_init('pretrain:model="vgg"')
    with pytest.raises(ValueError, match="<field>=<value>"):
        config.check_init("pretrain:epochs")
    with pytest.raises(ValueError, match="valid kinds: imagenet, pretrain"):
        hr.Config(init="scratch")


# ------------------------------------------------------------------------------------------- backbones

def test_load_backbone_copies_all_but_the_head():
    torch.manual_seed(0)
    src, dst = models.build_model("mlp-16x2-bn", 10, 1, 8), models.build_model("mlp-16x2-bn", 3, 1, 8)
    with torch.no_grad():
        for b in models.batchnorms(src):
            b.running_mean.add_(1.0)
    head = models.head_name(dst)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    copied = models.load_backbone(dst, src.state_dict())
    after, s = dst.state_dict(), src.state_dict()
    assert head == "7" and copied and all(not k.startswith("7.") for k in copied)
    for k in after:
        if k.startswith(head + "."):
            assert torch.equal(after[k], before[k])  # the new head stays as built
        else:
            assert torch.equal(after[k], s[k])
    with pytest.raises(ValueError, match="shape mismatches"):
        models.load_backbone(models.build_model("mlp-8x2-bn", 3, 1, 8), src.state_dict())


def test_missing_imagenet_weights_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    config.check_init("imagenet:resnet34")  # a valid spec: the file is only needed when a run starts
    with pytest.raises(ValueError, match="imagenet:<resnet18"):
        config.check_init("imagenet:vgg16")
    model = models.build_model("resnet18", 5, 3, 32)
    with pytest.raises(FileNotFoundError, match=r"not in the torch cache: expected .*resnet18-f37072fd\.pth"):
        train.initialize(model, "imagenet:resnet18", "cpu")
    # with the file where torchvision keeps it, every weight but the head is loaded
    fake = models.build_model("resnet18", 1000, 3, 32).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(fake, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    train.initialize(model, "imagenet:resnet18", "cpu")
    got = model.state_dict()
    assert torch.equal(got["layer4.1.conv2.weight"], fake["layer4.1.conv2.weight"]) and got["fc.weight"].shape[0] == 5


def test_image_folder_with_validation_split(tmp_path):
    from PIL import Image
    with pytest.raises(data.DataNotFoundError, match="train/, val/ and test/.*missing: test"):
        (tmp_path / "train").mkdir(), (tmp_path / "val").mkdir()
        data.load("image_folder_splits", root=tmp_path, val_size=10)
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("val", 2), ("test", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    ds = data.load("image_folder_splits", root=tmp_path, val_size=3)
    ds.num_workers = 0
    assert (ds.num_train, ds.num_classes, len(ds.val), len(ds.test)) == (6, 2, 3, 4)
    (x, y), = list(ds.val_batches(8))
    assert x.shape == (3, 3, 224, 224) and set(y.tolist()) <= {0, 1}
    assert sum(len(b[1]) for b in ds.test_batches(3)) == 4


# ----------------------------------------------------------------------------------------------- grids

def test_nso_grids_share_runs_and_match_compute():
    p = chapters.load_params("12_nso_accuracy", "smoke")
    a, b = chapters.configs("12_nso_accuracy", p), chapters.configs("13_nso_flatness", p)
    assert [c.key for c in a] == [c.key for c in b]  # B1 and B2 share their records
    assert all(c.val_size and c.init.startswith("pretrain:") and c.measure == (p["flatness"],) for c in a)
    abl = chapters.configs("14_nso_ablations", chapters.load_params("14_nso_ablations", "full"))
    k = {c.hparams["k"]: c for c in abl if c.method == "nso" and c.hparams["two_sided"] and c.weight_decay == 0
         and c.hparams["sigma"] == 0.01}
    assert {kk: (c.epochs, c.step_epochs) for kk, c in k.items()} == {1: (30, 10), 2: (15, 5), 3: (10, 3)}
    paper = chapters.configs("12_nso_accuracy", chapters.load_params("12_nso_accuracy", "paper"))
    assert {(c.model, c.init, c.dataset, c.optimizer, c.lr, c.epochs, c.batch_size) for c in paper} == {
        ("resnet34", "imagenet:resnet34", "image_folder_splits", "amsgrad", 1e-4, 30, 32)}


# --------------------------------------------------------------------------------------------- flatness

def test_flatness_matches_dense_float64_hessian():
    torch.manual_seed(0)
    model = models.MLP(4, 3, width=3, depth=1, activation="gelu").double()
    x, y = torch.randn(20, 4, dtype=torch.float64), torch.randint(0, 3, (20,))
    ds = SimpleNamespace(x_train=x, y_train=y)
    H = Dense(model, x, y).hessian()
    eig = torch.linalg.eigvalsh(H)
    f = estimators.flatness(model, ds, batch_size=20, max_probes=200, rtol=None, max_iter=200, tol=1e-10)
    assert f["n_probes"] == 200 and f["n_samples"] == 20
    assert abs(f["trace"] - H.trace().item()) < 4 * f["trace_se"]
    assert f["top_eig"] == pytest.approx(eig[eig.abs().argmax()].item(), rel=1e-5)
    paper = estimators.flatness(model, ds, batch_size=20)  # the paper's stopping rules
    assert paper["n_probes"] <= 100 and paper["eig_iters"] <= 100
    # in eval mode the batching changes only rounding (same probes, same start vector)
    g, h = (estimators.flatness(model, ds, batch_size=b, max_probes=20, rtol=None, max_iter=20) for b in (20, 5))
    assert g["trace"] == pytest.approx(h["trace"], rel=1e-10) and g["top_eig"] == pytest.approx(h["top_eig"])


def test_flatness_measurements_are_registered():
    assert {"nso_flatness", "nso_flatness_fast", "nso_flatness_smoke"} <= set(estimators.MEASUREMENTS)
