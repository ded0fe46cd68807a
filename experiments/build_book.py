"""Render the book from executed chapters: stage the sources with the executed notebooks and the figures'
CSV files into _build/src, then build HTML with Jupyter Book into _build/html (nothing is executed here), and
copy MathJax 3 into _build/html/_static/mathjax so the book reads offline (`_config.yml`'s mathjax_path).

    python experiments/build_book.py --executed _build/executed [--strict]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hessreg import sources  # noqa: E402
from hessreg.repo import root  # noqa: E402


def mathjax() -> Path:
    """MathJax 3 as npm installs it (`npm ci --prefix tests_browser`, run by `make book` and `make test`)."""
    return root() / "tests_browser" / "node_modules" / "mathjax" / "es5"


def chapters_in_toc() -> list[str]:
    toc = yaml.safe_load((root() / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        files += [c["file"] for c in part.get("chapters", [])]
    return files


def in_step(executed: Path, name: str) -> bool:
    """Whether the executed notebook has the cells of ``book/<name>.md`` (papermill's injected cell aside)."""
    return sources.cell_sources(nbformat.read(executed, as_version=4)) == sources.cell_sources(sources.read(name))


def stage(executed: Path, src: Path) -> None:
    if src.exists():
        shutil.rmtree(src)
    (src / "book" / "data").mkdir(parents=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(root() / name, src / name)
    for path in (root() / "book").iterdir():  # the chapters' MyST sources come in as their executed notebooks
        if path.suffix in (".md", ".bib", ".png", ".svg") and not sources.is_notebook(path):
            shutil.copy(path, src / "book" / path.name)
    if (root() / "book" / "_static").is_dir():  # the book's CSS: Jupyter Book adds <source>/_static/*.css to pages
        shutil.copytree(root() / "book" / "_static", src / "_static")
    missing, stale = [], []
    for entry in chapters_in_toc():
        name = Path(entry).name
        if sources.is_notebook(root() / Path(entry).with_suffix(".md")):
            done = executed / f"{name}.ipynb"
            if not done.exists():
                missing.append(name)
            elif not in_step(done, name):
                stale.append(name)
            else:
                shutil.copy(done, src / "book" / done.name)
    if missing:
        sys.exit(f"not executed yet: {', '.join(missing)} (run `make book` or `make test`, which execute them)")
    if stale:
        sys.exit(f"executed notebooks out of step with their sources book/*.md: {', '.join(stale)} (a source "
                 "changed after they ran: run `make book` or `make test` again)")
    for csv in (root() / "_build" / "figures").glob("*.csv"):
        shutil.copy(csv, src / "book" / "data" / csv.name)


def copy_mathjax(target: Path) -> bool:
    """The local MathJax that _config.yml's mathjax_path (relative to _static) points at; no CDN."""
    if not (mathjax() / "tex-mml-chtml.js").exists():
        print(f"MathJax not found in {mathjax()}: run `npm ci --prefix tests_browser` (make does); "
              "mathematics will not render", file=sys.stderr)
        return False
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(mathjax(), target)
    return True


def add_myst_downloads(html: Path) -> int:
    """Each notebook page's download menu offers the chapter's MyST source (``_sources/book/<name>.md``) beside
    the executed ``.ipynb`` the theme offers: the menu item is the theme's own, copied; returns the pages changed."""
    changed = 0
    for name in sources.names():
        page = html / "book" / f"{name}.html"
        anchor = f'<li><a href="../_sources/book/{name}.ipynb"'
        text = page.read_text() if page.exists() else ""
        if anchor not in text:
            continue
        shutil.copy(sources.source(name), html / "_sources" / "book" / f"{name}.md")
        start = text.index(anchor)
        end = text.index("</li>", start) + len("</li>")
        item = (text[start:end].replace(f"{name}.ipynb", f"{name}.md").replace(">.ipynb<", ">.md (MyST source)<")
                .replace('title="Download source file"', 'title="Download the MyST Markdown source"'))
        page.write_text(text[:end] + "\n" + item + text[end:])
        changed += 1
    return changed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--executed", default=str(root() / "_build" / "executed"))
    ap.add_argument("--strict", action="store_true", help="warnings are errors")
    args = ap.parse_args(argv)
    src = root() / "_build" / "src"
    stage(Path(args.executed), src)
    cmd = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(src), "--path-output", str(root())]
    if args.strict:
        cmd += ["--warningiserror", "--nitpick", "--keep-going"]
    result = subprocess.run(cmd)
    if result.returncode:
        return result.returncode
    if not copy_mathjax(root() / "_build" / "html" / "_static" / "mathjax") and args.strict:
        return 1
    add_myst_downloads(root() / "_build" / "html")
    print(f"\nThe book is at {root() / '_build' / 'html' / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
