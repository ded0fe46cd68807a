"""The chapters' sources: MyST Markdown notebooks (jupytext) in ``book/``, so that a one-word prose change is a
one-line diff. Tools that need an ``.ipynb`` (papermill, nbval's kernel, the book build) get one converted on the
fly; the sources never hold outputs.

A notebook source is a ``book/*.md`` file whose front matter names jupytext's format; the other ``.md`` files
there (the verdict appendix, references, included snippets) are plain MyST pages.
"""
from __future__ import annotations

from pathlib import Path

import jupytext
import nbformat

from .repo import root, write_atomic

FORMAT = "md:myst"


def book_dir() -> Path:
    """``<root>/book``."""
    return root() / "book"


def is_notebook(path: Path) -> bool:
    """Whether ``path`` is a jupytext notebook source (its front matter names a jupytext text representation)."""
    path = Path(path)
    if path.suffix != ".md" or not path.is_file():
        return False
    text = path.read_text()
    head = text.split("\n---", 1)[0] if text.startswith("---") else ""
    return "jupytext:" in head and "text_representation:" in head


def names() -> list[str]:
    """Every notebook source in ``book/`` by name (``02_sam_vs_psam``, ``intro``, …), sorted."""
    return sorted(p.stem for p in book_dir().glob("*.md") if is_notebook(p))


def source(name: str) -> Path:
    """``book/<name>.md``; a name without a notebook source raises ``FileNotFoundError`` naming the valid ones."""
    path = book_dir() / f"{name}.md"
    if not is_notebook(path):
        raise FileNotFoundError(f"no notebook source {path}; valid names: {', '.join(names())}")
    return path


def read(name: str) -> nbformat.NotebookNode:
    """The notebook of ``book/<name>.md`` (nbformat 4, no outputs)."""
    return jupytext.read(source(name), fmt=FORMAT)


def to_ipynb(name: str, folder: Path) -> Path:
    """``book/<name>.md`` written as ``<folder>/<name>.ipynb`` (atomically); its path."""
    target = Path(folder) / f"{name}.ipynb"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, nbformat.writes(read(name)) + "\n")
    return target


def cell_sources(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    """(cell type, source) of each cell but the one papermill injects (``injected-parameters``): what an executed
    notebook must share with its source to be in step with it."""
    return [(c.cell_type, c.source.strip()) for c in nb.cells
            if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
