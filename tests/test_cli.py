"""The command-line scripts speak like tools: a user's mistake is one argparse-style line and exit status 2, a bug
keeps its traceback; chapters run on a kernel that prints nothing the reader need not see."""
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from experiments import run as run_script
from experiments import sweep as sweep_script

REPO = Path(__file__).resolve().parent.parent
CHAPTER = "01_sgd_activations"

BAD = [  # (script, arguments): each a mistake the checks name, caught before anything trains
    ("sweep.py", ["nonexistent", "--scale", "cpu"]),
    ("sweep.py", [CHAPTER, "--shard", "3/2"]),
    ("sweep.py", [CHAPTER, "--shard", "x"]),
    ("sweep.py", [CHAPTER, "--set", "nonsense=1"]),
    ("sweep.py", [CHAPTER, "--set", "epochs=three"]),
    ("run.py", ["nonexistent"]),
    ("run.py", [CHAPTER, "-p", "epochs", "three"]),
    ("verdicts.py", ["--scales", "nonexistent"]),
    ("bench_run.py", ["--scale", "nonexistent"]),
    ("bench_layout.py", ["--scale", "nonexistent"]),
    ("bench_layout.py", ["--variants", "glibc,tcmalloc"]),
    ("bench_layout.py", ["--variants", "retained+nhwc"]),
]


@pytest.mark.parametrize("script, args", BAD, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_user_error_is_one_line_and_status_2(script, args, tmp_path):
    # should a check let the mistake through: --dry-run trains nothing, --out and the store are scratch folders
    extra = {"sweep.py": ["--dry-run"], "verdicts.py": [str(tmp_path / "verdicts")]}.get(script,
                                                                                       ["--out", str(tmp_path)])
    env = os.environ | {"HESSREG_STORE": str(tmp_path / "store")}
    proc = subprocess.run([sys.executable, str(REPO / "experiments" / script), *args, *extra], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"{script}: error: "), proc.stderr


def test_a_bug_keeps_its_traceback(monkeypatch, tmp_path, one_thread):
    """Only the checks' errors become one line: anything else propagates (the interpreter prints its traceback)."""
    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(sweep_script, "sweep", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        sweep_script.main([CHAPTER, "--scale", "smoke", "--dry-run"])
    monkeypatch.setattr(run_script, "execute", boom)
    with pytest.raises(RuntimeError, match="a bug"):
        run_script.main([CHAPTER, "--out", str(tmp_path)])


def test_chapters_run_without_the_kernel_transport_warning(tmp_path, capfd):
    """run.py's papermill call starts the kernel over IPC: no "running over TCP without encryption" warning, and
    no socket left in the notebook's folder."""
    notebook = tmp_path / "tiny.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")]), notebook)
    nb = run_script.execute(notebook, tmp_path / "out.ipynb", {}, kernel="python3", cwd=tmp_path)
    assert nb.cells[0].outputs[0]["text"] == "42\n"
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.ipynb", "tiny.ipynb"]
