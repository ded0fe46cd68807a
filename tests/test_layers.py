"""The package's layout: imports point one way, down through three layers (hessreg/__init__.py states them), with
no import circle, no import deferred into a function, no module over ~400 lines; the chapters read like a lecture
(short code cells)."""
import ast
from pathlib import Path

import pytest

import hessreg
from hessreg import sources

PACKAGE = Path(hessreg.__file__).parent

LEAVES = {"repo", "typecheck", "allocator"}
SCIENCE = {"data", "sizes", "activations", "models", "curvature", "estimators", "steps", "methods", "landscape",
           "report"}
RUNS = {"config", "provenance", "train", "results", "sweep", "distributed"}
BOOK_LAYER = {"chapters", "claims", "rules", "stats", "paper_b", "plots", "book", "calibration", "scoreboard",
              "sources", "verdict_figure"}
LAYERS = [LEAVES, SCIENCE, RUNS, BOOK_LAYER]  # each may import its own layer and those before it
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")


def local_imports(module: str) -> dict[str, list[int]]:
    """The package's modules that ``module`` imports (``from . import x``, ``from .x import y``,
    ``import hessreg.x``), each with the line numbers of its imports."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: dict[str, list[int]] = {}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and (node.level == 1 or (node.module or "").startswith("hessreg")):
            base = (node.module or "").removeprefix("hessreg").lstrip(".")
            names = [base.split(".")[0]] if base else [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name.split(".")[1] for a in node.names if a.name.startswith("hessreg.")]
        for name in names:
            found.setdefault(name, []).append(node.lineno)
    return found


def layer(module: str) -> int:
    return next(i for i, members in enumerate(LAYERS) if module in members)


def test_every_module_has_a_layer():
    assert sorted(set().union(*LAYERS)) == MODULES


@pytest.mark.parametrize("module", MODULES)
def test_imports_point_down(module):
    """Science imports no run or book module, runs import no book module, leaves import nothing of the package."""
    up = {m: lines for m, lines in local_imports(module).items() if layer(m) > layer(module)}
    assert not up, f"{module} ({layer(module)}) imports a higher layer: {up}"


def test_no_import_circle():
    graph = {m: set(local_imports(m)) - {m} for m in MODULES}
    done, path = set(), []

    def visit(m):
        if m in path:
            pytest.fail("import circle: " + " → ".join(path[path.index(m):] + [m]))
        if m in done:
            return
        path.append(m)
        for n in sorted(graph[m]):
            visit(n)
        path.pop()
        done.add(m)
    for m in MODULES:
        visit(m)


@pytest.mark.parametrize("module", MODULES)
def test_no_deferred_import_of_the_package(module):
    """Every import of the package's own modules is at the top of the module: nothing defers one to dodge a
    circle."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    top = {id(n) for n in tree.body}
    inner = [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top
             and (getattr(n, "level", 0) == 1 or any(a.name.startswith("hessreg") for a in n.names))]
    assert not inner, f"{module}: package imports inside functions at lines {inner}"


@pytest.mark.parametrize("module", MODULES)
def test_modules_are_small(module):
    assert len((PACKAGE / f"{module}.py").read_text().splitlines()) <= 440, module


NOTEBOOKS = sources.names()


def code_lines(cells) -> int:
    """Non-blank lines of the code cells, the ``parameters`` cell left out (it holds papermill's defaults)."""
    return sum(1 for c in cells if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", [])
               for line in "".join(c["source"]).splitlines() if line.strip())


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_chapters_are_short(notebook):
    """A chapter's code is the experiment, the figure and the verdict: ≤ 25 lines, the plumbing in hessreg."""
    assert code_lines(sources.read(notebook).cells) <= 25, notebook


def test_the_root_is_found_from_an_explicit_place(tmp_path, monkeypatch):
    """$HESSREG_ROOT first; else the current directory or a parent holding experiments/params; else the checkout
    beside the package; a clear error when none holds parameter files."""
    from hessreg import chapters, repo
    checkout = PACKAGE.parent.resolve()
    other = tmp_path / "elsewhere"
    (other / "experiments" / "params" / "01_sgd_activations").mkdir(parents=True)
    (other / "experiments" / "params" / "01_sgd_activations" / "smoke.yaml").write_text("scale: smoke\n")
    monkeypatch.delenv("HESSREG_ROOT", raising=False)
    monkeypatch.chdir(other / "experiments")
    assert repo.root() == other.resolve() and chapters.names() == ["01_sgd_activations"]
    monkeypatch.chdir(tmp_path)  # no parameter files here or above: the source checkout
    assert repo.root() == checkout and "02_sam_vs_psam" in chapters.names()
    monkeypatch.setenv("HESSREG_ROOT", str(other))
    assert repo.root() == other.resolve()
    monkeypatch.setenv("HESSREG_ROOT", str(tmp_path))
    with pytest.raises(repo.RootNotFoundError, match="HESSREG_ROOT=.* holds no experiments/params"):
        repo.root()
    monkeypatch.delenv("HESSREG_ROOT")
    monkeypatch.setattr(repo, "PACKAGE", tmp_path / "site-packages" / "hessreg")  # an installed copy
    with pytest.raises(repo.RootNotFoundError, match=f"looked for experiments/params.*in {tmp_path}"):
        repo.root()
