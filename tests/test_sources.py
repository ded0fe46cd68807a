"""The chapters' sources are MyST Markdown notebooks (jupytext): every chapter has one, none is JSON, they are
canonical (jupytext writes them back unchanged, so a prose change is a one-line diff), the tools that need an
.ipynb get the same cells, and the book build refuses executed notebooks out of step with their sources."""
from pathlib import Path

import jupytext
import nbformat
import pytest

from experiments import build_book
from hessreg import chapters, sources

REPO = Path(__file__).resolve().parent.parent
NAMES = sources.names()


def test_every_page_of_the_toc_that_runs_code_is_a_myst_notebook():
    notebooks = {Path(f).name for f in build_book.chapters_in_toc() if sources.is_notebook(REPO / f"{f}.md")}
    assert set(chapters.names()) | {"intro"} <= notebooks == set(NAMES)
    assert not list((REPO / "book").glob("*.ipynb")), "chapter sources are book/*.md, not JSON"
    assert not sources.is_notebook(REPO / "book" / "appendix_verdicts.md")  # a plain MyST page
    with pytest.raises(FileNotFoundError, match="valid names: .*02_sam_vs_psam"):
        sources.source("99_nothing")


@pytest.mark.parametrize("name", NAMES)
def test_sources_are_canonical_and_hold_no_outputs(name, tmp_path):
    """jupytext writes the source back byte for byte (what a reviewer diffs is what the tools read), and the
    .ipynb made of it has the same cells."""
    text = sources.source(name).read_text()
    nb = sources.read(name)
    assert jupytext.writes(nb, fmt=sources.FORMAT) == text
    converted = nbformat.read(sources.to_ipynb(name, tmp_path), as_version=4)
    assert sources.cell_sources(converted) == sources.cell_sources(nb)
    assert all(not c.get("outputs") for c in converted.cells)


def test_the_book_build_refuses_an_executed_notebook_out_of_step(tmp_path):
    name = "02_sam_vs_psam"
    executed = nbformat.read(sources.to_ipynb(name, tmp_path), as_version=4)
    injected = nbformat.v4.new_code_cell("scale = 'cpu'", metadata={"tags": ["injected-parameters"]})
    executed.cells.insert(1, injected)  # what papermill adds, and outputs, keep it in step
    executed.cells[-1].outputs = []
    nbformat.write(executed, tmp_path / "ran.ipynb")
    assert build_book.in_step(tmp_path / "ran.ipynb", name)
    prose = next(c for c in executed.cells if c.cell_type == "markdown")
    prose.source += " One more word."
    nbformat.write(executed, tmp_path / "ran.ipynb")
    assert not build_book.in_step(tmp_path / "ran.ipynb", name)
