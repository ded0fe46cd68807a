"""Keep the notebooks nbval executes, with their outputs, so the book build renders them without running any
chapter a second time (``--executed-dir``)."""
from pathlib import Path

import nbformat
import pytest


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
        nbformat.write(parent.nb, Path(target) / Path(str(parent.path)).name)
