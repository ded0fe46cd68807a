"""nbval on the chapters' MyST Markdown sources (``book/*.md``, jupytext), and keep the notebooks it executes,
with their outputs, so the book build renders them without running any chapter a second time
(``--executed-dir``)."""
from pathlib import Path
from unittest import mock

import jupytext
import nbformat
import pytest

try:
    from nbval.plugin import IPyNbFile
except ImportError:  # nbval absent: no notebook is collected
    IPyNbFile = None

from hessreg import sources


if IPyNbFile is not None:
    class MystNotebook(IPyNbFile):
        """nbval's notebook collector reading a jupytext source: nbval reads its file with ``nbformat.read``,
        which sees only JSON, so that one call reads the MyST file through jupytext instead."""

        def collect(self):
            with mock.patch("nbval.plugin.nbformat.read", lambda path, as_version: jupytext.read(path)):
                yield from super().collect()


def pytest_collect_file(file_path, parent):
    opt = parent.config.option
    if IPyNbFile is not None and (opt.nbval or opt.nbval_lax) and sources.is_notebook(file_path):
        return MystNotebook.from_parent(parent, path=file_path)


def pytest_addoption(parser):
    parser.addoption("--executed-dir", default=None, help="write the notebooks nbval executed, with outputs, here")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    yield
    outputs = getattr(item, "test_outputs", None)
    if call.when == "call" and outputs is not None and hasattr(item, "cell"):
        item.cell.outputs = list(outputs)
        item.cell.execution_count = item.cell_num + 1 if hasattr(item, "cell_num") else None
        for out in item.cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = item.cell.execution_count


def pytest_sessionfinish(session):
    target = session.config.getoption("--executed-dir")
    if not target:
        return
    notebooks = {id(item.parent): item.parent for item in session.items if hasattr(item, "test_outputs")}
    for parent in notebooks.values():
        Path(target).mkdir(parents=True, exist_ok=True)
        nbformat.write(parent.nb, Path(target) / f"{Path(str(parent.path)).stem}.ipynb")
