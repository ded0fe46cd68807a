"""The fault list (README, "Reliability"), each fault injected for real and its outcome asserted: nothing lost,
nothing trained twice, one clear message naming what is wrong and the way on.

Processes are really killed (SIGKILL) and really race; files are really truncated; what cannot be done for real
on any machine (a full disk; a read-only folder when the tests run as root, who ignores permissions) is injected
by a patched call at the point where the real fault would surface.
"""
import dataclasses
import errno
import fcntl
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import papermill.cli
import pytest
import torch
import yaml

import hessreg as hr
from hessreg import book, chapters, data, methods, repo, results, sizes, sweep, train
from hessreg.sweep import grid

REPO = Path(__file__).resolve().parent.parent
TINY = hr.Config(train_size=256, test_size=100, model="mlp-16x1", epochs=1, batch_size=64, lr=0.05, device="cpu",
                 augment=False)
ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def raising(error: BaseException):
    """A stand-in for a call that fails with ``error``."""
    def fail(*args, **kwargs):
        raise error
    return fail


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def counting_run(monkeypatch) -> list:
    """Patch the sweep's run so that each run trained is listed (by seed)."""
    calls = []
    monkeypatch.setattr(sweep, "run", lambda c: calls.append(c.seed) or train.run(c))
    return calls


def forbid_training(monkeypatch) -> None:
    monkeypatch.setattr(sweep, "run", lambda c: pytest.fail(f"trained {c.key} although the grid was refused"))


def leftovers(root: Path) -> list[str]:
    """Files other than records: temporary files, claims, probes."""
    return sorted(p.name for p in root.iterdir() if not p.name.endswith(".json")) if root.exists() else []


def child(code: str, *args: str) -> subprocess.Popen:
    """A Python process running ``code`` with the tiny config at hand (``TINY``, ``hr``, ``S`` = hessreg.sweep)."""
    head = ("import os, sys, time, dataclasses, signal\nimport hessreg as hr\nfrom hessreg import sweep as S, methods\n"
            f"TINY = hr.Config.from_dict({TINY.to_dict()!r})\n")
    return subprocess.Popen([sys.executable, "-c", head + code, *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=REPO)


def wait_for_line(proc: subprocess.Popen, marker: str, timeout: float = 60) -> None:
    """Read the child's output until a line holds ``marker`` (fails with its output otherwise)."""
    seen, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return
    proc.kill()
    pytest.fail(f"child never printed {marker!r}; its output:\n{''.join(seen)}")


# ------------------------------------------------------------------------------------ divergence, any method

@pytest.mark.parametrize("fault", ["nan", "inf", "huge_lr"])
@pytest.mark.parametrize("name", sorted(methods.METHODS))
def test_every_method_records_divergence_instead_of_raising(name, fault, monkeypatch, tmp_path):
    """NaN or inf written into one unit's weights after the first step (the method's later steps then run on
    them), or a learning rate that blows the weights up: the run ends, is recorded as diverged, and the record is
    stored. (A single inf weight can stay hidden: a ReLU maps −inf·x to 0 and the loss stays finite.)"""
    real = methods.METHODS[name]

    def poisoned(model, x, y, loss_fn, **hp):
        out = real.step(model, x, y, loss_fn, **hp)
        if fault != "huge_lr" and not poisoned.done:
            with torch.no_grad():
                next(model.parameters())[0].fill_(float(fault))  # one hidden unit's weights blow up
            poisoned.done = True
        return out

    poisoned.done = False
    monkeypatch.setitem(methods.METHODS, name, dataclasses.replace(real, step=poisoned))
    config = TINY.replace(method=name, schedule="constant", weight_decay=0.0,
                          lr=1e30 if fault == "huge_lr" else TINY.lr)
    record = hr.run(config)
    assert record.diverged and record.diverged_at["epoch"] == 1 and record.history == []
    store = hr.RecordStore(tmp_path)
    back = store.load(store.put(record).stem)
    assert back.diverged and back.to_dict() == record.to_dict()


def test_a_step_failing_on_non_finite_weights_is_a_divergence_and_any_other_failure_raises(monkeypatch):
    """Like torch.multinomial on NaN probabilities: a RuntimeError raised while the weights are not finite ends
    the run as diverged; the same error on finite weights is a bug and is raised."""
    real = methods.METHODS["sgd"]

    def fragile(model, x, y, loss_fn):
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
        out = real.step(model, x, y, loss_fn)
        with torch.no_grad():
            next(model.parameters()).view(-1)[0] = float("nan")
        return out

    monkeypatch.setitem(methods.METHODS, "sgd", dataclasses.replace(real, step=fragile))
    record = hr.run(TINY)
    assert record.diverged and record.diverged_at == {"epoch": 1, "step": 1}
    monkeypatch.setitem(methods.METHODS, "sgd", dataclasses.replace(real, step=raising(RuntimeError("a bug"))))
    with pytest.raises(RuntimeError, match="a bug"):
        hr.run(TINY)


# ----------------------------------------------------------------------------- reproducing a record exactly

def test_a_rerun_with_the_recorded_settings_reproduces_the_record_exactly():
    """CPU results depend on the thread count; the record says it (provenance), and a rerun that sets it from
    there gives the same test accuracy, loss and curves."""
    before = torch.get_num_threads()
    config = TINY.replace(model="mlp-32x2", epochs=2, seed=3)
    try:
        torch.set_num_threads(2)
        record = hr.run(config)
        torch.set_num_threads(1)  # the reader's machine differs
        assert record.provenance["threads"] == 2
        torch.set_num_threads(record.provenance["threads"])
        again = hr.run(hr.Config.from_dict(record.config))
    finally:
        torch.set_num_threads(before)
    strip = lambda h: [{k: v for k, v in e.items() if k != "time_s"} for e in h]
    assert again.key == record.key and again.test_acc == record.test_acc and again.test_loss == record.test_loss
    assert strip(again.history) == strip(record.history)


# ------------------------------------------------------------------------ sizes: refused before data loads

@pytest.mark.parametrize("fields,message", [
    (dict(train_size=60001), "train_size=60001 is more than fashion_mnist has: 60000 training examples"),
    (dict(test_size=10001), "test_size=10001 is more than fashion_mnist's 10000 test examples"),
    (dict(val_size=60000), "val_size=60000 leaves no training data: fashion_mnist has 60000"),
    (dict(val_size=100, train_size=59950), "train_size=59950 is more than fashion_mnist has: 59900 training "
                                           r"examples \(60000 minus val_size=100\)"),
    (dict(dataset="digits", val_size=200, train_size=900), "train_size=900 is more than digits has: 800"),
    (dict(dataset="digits", train_size=None, batch_size=2000), "batch_size=2000 is more than the 1000 training"),
])
def test_sizes_the_data_cannot_give_are_refused_before_it_loads(fields, message, monkeypatch, tmp_path):
    """One message naming the field, the value and what the dataset has; from run() before loading, and from
    sweep() for every config of the grid before its first run trains."""
    bad = TINY.replace(**fields)
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("data loaded before the sizes were checked"))
    with pytest.raises(ValueError, match=message):
        hr.run(bad)
    forbid_training(monkeypatch)
    store = hr.RecordStore(tmp_path)
    with pytest.raises(sweep.GridError, match=message + ".*1 config") as e:
        sweep.sweep(grid(TINY, seed=[0, 1]) + [bad], store, progress=False)  # the bad config comes last
    assert "nothing was trained" in str(e.value) and len(store) == 0


def test_dataset_sizes_are_known_without_loading_and_agree_with_the_loaders(tmp_path, monkeypatch):
    assert sizes.dataset_sizes("fashion_mnist") == sizes.KNOWN_SIZES["fashion_mnist"] == sizes.Sizes(60000, 10000)
    xtr, ytr, xte, yte = data.load_digits_arrays(8)
    assert sizes.dataset_sizes("digits") == sizes.Sizes(len(ytr), len(yte)) and len(yte) == data.DIGITS_TEST
    from tests.test_data import fake_fashion_mnist  # a smaller copy: the sizes come from its IDX headers
    assert sizes.dataset_sizes("fashion_mnist", fake_fashion_mnist(tmp_path / "fm", 64, 32)) == sizes.Sizes(64, 32)
    for split, n in (("train", 3), ("val", 2)):  # an image folder: files are counted, not opened
        for cls in ("cat", "dog"):
            (tmp_path / "img" / split / cls).mkdir(parents=True)
            for i in range(n):
                (tmp_path / "img" / split / cls / f"{i}.JPG").write_bytes(b"")
            (tmp_path / "img" / split / cls / "notes.txt").write_text("not an image")
    assert sizes.dataset_sizes("imagenet", tmp_path / "img") == sizes.Sizes(6, 4)
    check = dict(train_size=None, test_size=None, val_size=None, batch_size=4, root=tmp_path / "img")
    sizes.check_sizes("imagenet", **check)
    for change, message in ((dict(train_size=7), "train_size=7 is more than imagenet has: 6"),
                            (dict(val_size=2), "val_size=2: imagenet has no validation split"),
                            (dict(test_size=2), "test_size=2: imagenet tests on its whole val/ folder")):
        with pytest.raises(ValueError, match=message):
            sizes.check_sizes("imagenet", **check | change)


def test_every_grid_of_every_scale_passes_the_size_check():
    """The committed parameter files ask for nothing the data cannot give (datasets present here: Fashion-MNIST
    and the digits; CIFAR-10 and the image folders of the paper scale need data this machine lacks)."""
    checked = 0
    for chapter in chapters.GRIDS:
        for scale in chapters.SCALES:
            if chapters.has_params(chapter, scale):
                configs = [c for c in chapters.configs(chapter, chapters.load_params(chapter, scale))
                           if c.dataset in ("fashion_mnist", "digits")]
                sweep.check_data(configs)
                checked += len(configs)
    assert checked > 1000


# ---------------------------------------------------------------------------------------- the record store

@pytest.mark.parametrize("damage,why", [
    (lambda text: text[: len(text) // 2], "not valid JSON, cut short"),
    (lambda text: "<<<<<<< HEAD\n" + text, "not valid JSON"),  # a merge conflict left in
    (lambda text: "[1, 2]", r"not a record \(a JSON list"),
    (lambda text: '{"note": "hand-written"}', "not a record"),
    (lambda text: text.replace(json.loads(text)["key"], "0123456789abcdef"), "holds the record of key 0123"),
])
def test_a_damaged_record_is_named_before_any_training_and_moving_it_aside_redoes_only_that_run(
        damage, why, tmp_path, monkeypatch):
    store = hr.RecordStore(tmp_path)
    configs = grid(TINY, seed=[0, 1, 2])
    sweep.sweep(configs[:2], store, progress=False)
    path = store.path(configs[1])
    path.write_text(damage(path.read_text()))
    intact = store.path(configs[0]).read_bytes()
    forbid_training(monkeypatch)  # configs[2] is missing, yet nothing trains: the damage is found first
    with pytest.raises(results.CorruptRecordError) as e:
        sweep.sweep(configs, store, progress=False)
    msg = str(e.value)
    assert re.search(why, msg) and str(path) in msg and "git checkout" in msg and f"mv {path} {path}.corrupt" in msg
    with pytest.raises(results.CorruptRecordError, match=re.escape(str(path))):  # reading, too
        sweep.sweep(configs, store, train=False, progress=False)
    path.rename(f"{path}.corrupt")  # what the message says
    calls = counting_run(monkeypatch)
    df = sweep.sweep(configs, store, progress=False)
    assert sorted(calls) == [1, 2] and len(df) == 3 and len(store) == 3
    assert store.path(configs[0]).read_bytes() == intact and Path(f"{path}.corrupt").exists()


def test_sigkill_in_the_middle_of_a_run_loses_nothing_and_the_next_sweep_resumes(tmp_path, monkeypatch):
    """A sweep process killed while its second run trains: the first record is whole, the second absent, its
    claim stale; the next sweep takes the claim over and trains exactly the two missing runs."""
    proc = child(
        "real_step, real_run, state = methods.METHODS['sgd'], S.run, {}\n"
        "def step(*a, **k):\n"
        "    if state['slow']:\n"
        "        print('mid-training', flush=True); time.sleep(120)\n"
        "    return real_step.step(*a, **k)\n"
        "methods.METHODS['sgd'] = dataclasses.replace(real_step, step=step)\n"
        "S.run = lambda c: state.update(slow=c.seed == 1) or real_run(c)\n"
        "S.sweep(S.grid(TINY, seed=[0, 1, 2]), hr.RecordStore(sys.argv[1]), progress=False)\n", str(tmp_path))
    wait_for_line(proc, "mid-training")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(30) == -signal.SIGKILL
    store, configs = hr.RecordStore(tmp_path), grid(TINY, seed=[0, 1, 2])
    assert len(store) == 1 and configs[0] in store and leftovers(tmp_path) == [f"{configs[1].key}.lock"]
    first = store.path(configs[0]).read_bytes()
    calls = counting_run(monkeypatch)
    df = sweep.sweep(configs, store, progress=False)
    assert calls == [1, 2] and len(df) == 3 and leftovers(tmp_path) == []
    assert store.path(configs[0]).read_bytes() == first


def test_sigkill_in_the_middle_of_a_write_leaves_no_record_and_its_temporary_file_is_cleaned(tmp_path, monkeypatch):
    """Killed between writing the temporary file and renaming it: no record (not a partial one), the temporary
    file is invisible to the store and removed by the next sweep; a live writer's file is never removed."""
    proc = child("store = hr.RecordStore(sys.argv[1]); record = hr.run(TINY)\n"
                 "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
                 "store.put(record)\n", str(tmp_path))
    assert proc.wait(120) == -signal.SIGKILL, proc.stdout.read()
    store = hr.RecordStore(tmp_path)
    (tmp,) = tmp_path.glob(".*.tmp")
    assert tmp.name.startswith(f".{TINY.key}.json.") and TINY not in store and len(store) == 0 and list(store) == []
    live = tmp_path / f".{TINY.replace(seed=9).key}.json.live.tmp"  # a write in progress in another process
    fd = os.open(live, os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        past = time.time() - 3600
        for p in (tmp, live):
            os.utime(p, (past, past))
        calls = counting_run(monkeypatch)
        sweep.sweep([TINY], store, progress=False)
        assert calls == [0] and TINY in store and leftovers(tmp_path) == [live.name]
    finally:
        os.close(fd)
    assert store.clean(min_age_s=0) == [live] and leftovers(tmp_path) == []


def test_two_processes_on_the_same_shard_train_each_run_exactly_once(tmp_path):
    """Two sweeps of the same grid and shard, started together: every run is trained once, by one of them, and
    each returns the whole grid."""
    log, go = tmp_path / "trained.log", tmp_path / "go"
    code = ("real = S.run\n"
            "def run(c):\n"
            "    with open(sys.argv[2], 'a') as f: f.write(f'{os.getpid()} {c.key}\\n')\n"
            "    time.sleep(0.5)  # each run holds its claim a while: the other process meets it\n"
            "    return real(c)\n"
            "S.run = run\n"
            "configs = S.grid(TINY, seed=[0, 1, 2, 3])\n"
            "print('ready', flush=True)\n"
            "while not os.path.exists(sys.argv[3]): time.sleep(0.01)\n"
            "df = S.sweep(configs, hr.RecordStore(sys.argv[1]), progress=False)\n"
            "print('returned', len(df), flush=True)\n")
    procs = [child(code, str(tmp_path / "store"), str(log), str(go)) for _ in range(2)]
    for p in procs:
        wait_for_line(p, "ready")
    go.touch()
    outputs = [p.communicate(timeout=180)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert all("returned 4" in out for out in outputs), outputs
    lines = [line.split() for line in log.read_text().splitlines()]
    keys = sorted(k for _, k in lines)
    assert keys == sorted(c.key for c in grid(TINY, seed=[0, 1, 2, 3])), lines  # each run trained exactly once
    assert len({pid for pid, _ in lines}) == 2, f"one process trained everything: {lines}"
    assert len(hr.RecordStore(tmp_path / "store")) == 4 and leftovers(tmp_path / "store") == []


def test_a_store_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    """Read-only (as a user without permission sees it, and as root on a read-only mount sees it: the write
    itself fails) and full before the first run: one StoreError naming the folder, nothing trained."""
    store = hr.RecordStore(tmp_path / "store")
    forbid_training(monkeypatch)
    with monkeypatch.context() as m:
        m.setattr(results.os, "access", lambda path, mode: False)
        with pytest.raises(results.StoreError, match=f"record store {tmp_path / 'store'} is not writable"):
            sweep.sweep([TINY], store, progress=False)
    with monkeypatch.context() as m:
        m.setattr(repo.tempfile, "mkstemp", raising(OSError(errno.EROFS, "Read-only file system")))
        with pytest.raises(results.StoreError, match="not writable \\(Read-only file system\\)"):
            sweep.sweep([TINY], store, progress=False)
    with monkeypatch.context() as m:
        m.setattr(results.os, "fsync", raising(disk_full()))
        with pytest.raises(results.StoreError, match="not writable \\(No space left on device\\)"):
            sweep.sweep([TINY], store, progress=False)
    assert leftovers(store.root) == [] and len(store) == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions (the patched cases above run as root)")
def test_a_read_only_folder_for_real(tmp_path, monkeypatch):
    store = hr.RecordStore(tmp_path / "store")
    store.root.mkdir()
    store.root.chmod(0o555)
    forbid_training(monkeypatch)
    try:
        with pytest.raises(results.StoreError, match="not writable"):
            sweep.sweep([TINY], store, progress=False)
    finally:
        store.root.chmod(0o755)


def test_a_full_disk_after_a_run_names_the_record_and_leaves_nothing_partial(tmp_path, monkeypatch):
    store, configs = hr.RecordStore(tmp_path), grid(TINY, seed=[0, 1, 2])
    real = sweep.run

    def run_then_fill_the_disk(config):
        record = real(config)
        if config.seed == 1:
            monkeypatch.setattr(results.os, "fsync", raising(disk_full()))
        return record

    monkeypatch.setattr(sweep, "run", run_then_fill_the_disk)
    with pytest.raises(results.StoreError) as e:
        sweep.sweep(configs, store, progress=False)
    assert f"could not write the record {store.path(configs[1])} (No space left on device)" in str(e.value)
    assert e.value.errno == errno.ENOSPC and e.value.record.key == configs[1].key
    assert len(store) == 1 and leftovers(tmp_path) == []  # no partial file, no temporary file, no claim
    monkeypatch.undo()  # space is back
    calls = counting_run(monkeypatch)
    assert len(sweep.sweep(configs, store, progress=False)) == 3 and calls == [1, 2]


def test_missing_data_is_named_before_any_training(tmp_path, monkeypatch):
    """$HESSREG_DATA set to an empty folder, no Debian package, offline: every place tried and every way to
    provide the data is in the message, from the sweep before its first run and from run() before loading."""
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("HESSREG_DATA", str(empty))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "no-debian")
    monkeypatch.setattr(data.torchvision.datasets, "FashionMNIST",
                        raising(RuntimeError("offline")))
    forbid_training(monkeypatch)
    store = hr.RecordStore(tmp_path / "store")
    with pytest.raises(data.DataNotFoundError) as e:
        sweep.sweep(grid(TINY, seed=[0, 1]), store, progress=False)
    for part in (f"$HESSREG_DATA: {empty}", "no-debian", "offline", "root=", "apt-get install dataset-fashion-mnist"):
        assert part in str(e.value)
    assert not store.root.exists() or leftovers(store.root) == []
    with pytest.raises(data.DataNotFoundError):
        train.run(TINY.replace(train_size=192))  # sizes no other test loaded: not in the loader's cache


# ---------------------------------------------------------------------------------- what a reader types

def readme_commands() -> list[list[str]]:
    """Every command of README.md's bash blocks as argv: continuation lines joined, comments dropped, a loop
    ``for i in 0 1; do CMD $i/2 > log 2>&1 & done; wait`` taken at its first value (``CMD 0/2``), redirections
    and ``&`` gone."""
    text = (REPO / "README.md").read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if not line or line.startswith("#"):
                continue
            if m := re.fullmatch(r"for (\w+) in (\S+)[^;]*; do (.*?)\s*&?\s*;?\s*done; wait", line):
                line = m[3].replace(f"${m[1]}", m[2])
            argv, skip = [], False
            for token in shlex.split(line):
                if skip or token == "&" or re.fullmatch(r"[0-9]?>.*", token):
                    skip = token in (">", "2>")  # the target follows
                    continue
                argv.append(token)
            out.append(argv)
    return out


def test_every_readme_sweep_command_runs(capsys):
    """``experiments/sweep.py`` as the README shows it, with ``--dry-run`` where it would train (it reads the
    committed store and writes nothing)."""
    from experiments import sweep as sweep_script
    ran = 0
    for argv in readme_commands():
        script = next((i for i, a in enumerate(argv) if a.endswith("experiments/sweep.py")), None)
        if script is None:
            continue
        args = argv[script + 1:]
        assert sweep_script.main(args + ["--dry-run"] * ("--dry-run" not in args)) == 0, argv
        assert re.search(r"\d+ of \d+ distinct runs stored in", capsys.readouterr().out), argv
        ran += 1
    assert ran >= 4


def test_every_readme_parameter_override_is_accepted():
    """The README's papermill and run.py commands pass their parameters (``-f``, ``-y``, ``-p``) as papermill
    and run.py would; the chapter's check accepts them (executing the chapters would train at full scale)."""
    checked = 0
    for argv in readme_commands():
        # papermill's input: the .ipynb jupytext made of book/<chapter>.md (named after the chapter)
        notebook = next((b for a, b in zip(argv, argv[1:]) if a.endswith("papermill") and b.endswith(".ipynb")),
                        None)
        runner = "experiments/run.py" in " ".join(argv)
        if not (notebook or runner):
            continue
        if runner:
            chapter = argv[argv.index(next(a for a in argv if a.endswith("run.py"))) + 1]
            params = chapters.load_params(chapter, argv[argv.index("--scale") + 1])
        else:
            chapter, params = Path(notebook).stem, {}
        for flag, value in zip(argv, argv[1:] + [""]):
            if flag == "-f":
                params |= yaml.safe_load((REPO / value).read_text())
            elif flag == "-y":
                params |= yaml.safe_load(value)
        for i, flag in enumerate(argv):
            if flag == "-p":
                name, value = argv[i + 1], argv[i + 2]
                params[name] = yaml.safe_load(value) if runner else papermill.cli._resolve_type(value)
        book.check_parameters(chapter, **params)
        checked += 1
    assert checked >= 2


def test_papermill_p_with_a_list_or_dict_string_is_read_as_yaml():
    """``papermill … -p seeds '[0, 1]'`` passes a string; the chapter reads it as the list it spells."""
    chapter = "01_sgd_activations"
    p = chapters.load_params(chapter, "full")
    given = {"seeds": papermill.cli._resolve_type("[0, 1]"), "verdict": "{chance_margin: 4.0, slope_tolerance: "
             "0.5, tolerance: 1.0}", "activations": "[relu]"}
    assert isinstance(given["seeds"], str)
    checked = book.check_parameters(chapter, **p | given)
    assert checked["seeds"] == [0, 1] and checked["activations"] == ["relu"]
    assert checked["verdict"]["chance_margin"] == 4.0
    with pytest.raises(TypeError, match="'seeds' of 01_sgd_activations must be list of int, got \\['a'\\]"):
        book.check_parameters(chapter, **p | {"seeds": "[a]"})
    with pytest.raises(TypeError, match="'seeds' of 01_sgd_activations must be list, got '\\[0, 1', which is not YAML"):
        book.check_parameters(chapter, **p | {"seeds": "[0, 1"})
