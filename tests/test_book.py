"""Chapter plumbing: parameter files agree with the notebooks, papermill sees the parameters, bad parameters
fail before training, and a chapter shows committed full-scale records when they are complete."""
import typing
from pathlib import Path

import click.testing
import papermill
import papermill.cli
import pytest

from hessreg import book, chapters, results, sources
from hessreg.typecheck import conforms

REPO = Path(__file__).resolve().parent.parent


def parameters_cell(chapter):
    nb = sources.read(chapter)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{chapter}: exactly one cell tagged 'parameters'"
    namespace = {}
    exec(cells[0].source, namespace)
    # all but the cell's one import, which its type hints use
    return {k: v for k, v in namespace.items() if not k.startswith("__") and v is not typing.Optional}


@pytest.mark.parametrize("chapter", chapters.names())
def test_parameter_files_agree_with_the_notebook(chapter, tmp_path):
    smoke = chapters.load_params(chapter, "smoke")
    assert parameters_cell(chapter) == smoke
    for scale in [s for s in chapters.SCALES if chapters.has_params(chapter, s)]:
        p = chapters.load_params(chapter, scale)
        assert set(p) == set(smoke) and p["scale"] == scale
        if chapter in chapters.GRIDS:
            configs = chapters.configs(chapter, p)  # every scale's grid is a valid set of configs
            assert len({c.key for c in configs}) == len(configs) > 0
        book.check_parameters(chapter, **p)
    inspected = papermill.inspect_notebook(str(sources.to_ipynb(chapter, tmp_path)))
    assert set(inspected) == set(smoke)


NOTEBOOKS = [name for name in sources.names()
             if any("parameters" in c.metadata.get("tags", []) for c in sources.read(name).cells)]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_parameters_describe_themselves(name, tmp_path):
    """``papermill --help-notebook`` gives every parameter a type and one line of help, and the type holds the
    parameter's value at every scale."""
    notebook = sources.to_ipynb(name, tmp_path)
    inspected = papermill.inspect_notebook(str(notebook))
    assert inspected
    for name, p in inspected.items():
        assert p["inferred_type_name"] != "None" and p["help"], f"{notebook.stem}: {name} lacks a type or a help"
    shown = click.testing.CliRunner().invoke(papermill.cli.papermill, ["--help-notebook", str(notebook)]).output
    assert "Unknown type" not in shown and all(p["help"] in shown for p in inspected.values())
    chapter = notebook.stem
    for scale in [s for s in chapters.SCALES if chapters.has_params(chapter, s)]:
        for name, value in chapters.load_params(chapter, scale).items():
            hint = eval(inspected[name]["inferred_type_name"], {"Optional": typing.Optional})
            assert conforms(value, hint), f"{chapter} at {scale}: {name} = {value!r} is not {hint}"


def test_check_parameters_errors():
    chapter = next(iter(chapters.GRIDS))
    with pytest.raises(TypeError, match="'epochs' .* must be int"):
        book.check_parameters(chapter, scale="smoke", epochs="3")
    with pytest.raises(TypeError, match="'seeds' .* must be list of int"):
        book.check_parameters(chapter, scale="smoke", seeds=[0.5])
    with pytest.raises(ValueError, match=f"valid choices: {', '.join(chapters.SCALES)}"):
        book.check_parameters(chapter, scale="huge")
    with pytest.raises(ValueError, match="unknown parameter"):
        book.check_parameters(chapter, scale="smoke", nonsense=1)
    with pytest.raises(ValueError, match="unknown chapter"):
        chapters.load_params("99_nothing", "smoke")


def test_papermill_wrong_type_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("HESSREG_STORE", str(tmp_path / "store"))
    chapter = next(iter(chapters.GRIDS))
    with pytest.raises(papermill.PapermillExecutionError, match="TypeError"):
        papermill.execute_notebook(str(sources.to_ipynb(chapter, tmp_path)), str(tmp_path / "out.ipynb"),
                                   parameters={"epochs": "three"}, kernel_name="python3", progress_bar=False,
                                   cwd=str(REPO / "book"))
    assert not (tmp_path / "store").exists()


def test_chapter_shows_the_best_committed_records(tmp_path, monkeypatch):
    """Smoke builds show the committed full grid when complete, else the committed cpu grid (partial: said in the
    caption), else train their own smoke grid; nothing committed is retrained."""
    chapter = next(iter(chapters.GRIDS))
    tiny = chapters.load_params(chapter, "smoke") | dict(train_size=128, test_size=64, model="mlp-8x1", epochs=1,
                                                      batch_size=64, device="cpu", activations=["relu"],
                                                      betas=[10.0])
    by_scale = {"full": tiny | {"scale": "full", "seeds": [0, 1]}, "cpu": tiny | {"scale": "cpu", "seeds": [7, 8]},
                "noisy": tiny | {"scale": "noisy", "seeds": [5]},
                "noisy_cnn": tiny | {"scale": "noisy_cnn", "seeds": [6]}}
    monkeypatch.setattr(chapters, "load_params", lambda ch, scale: by_scale.get(scale, tiny))
    committed, smoke = results.RecordStore(tmp_path / "committed"), results.RecordStore(tmp_path / "smoke")
    monkeypatch.setattr(results, "store_for", lambda scale: smoke if scale == "smoke" else committed)
    full, cpu = chapters.configs(chapter, by_scale["full"]), chapters.configs(chapter, by_scale["cpu"])
    from hessreg.sweep import sweep
    sweep(full[:-1], committed, progress=False)  # full incomplete, no cpu record: the chapter trains smoke
    r = book.run_chapter(chapter, tiny, progress=False)
    assert r.scale == "smoke" and len(smoke) == len(chapters.configs(chapter, tiny))
    sweep(cpu[:2], committed, progress=False)  # a partial cpu grid is shown as such
    n_smoke = len(smoke)
    r = book.run_chapter(chapter, tiny, progress=False)
    assert r.scale == "cpu" and len(r.frame) == 2 and len(smoke) == n_smoke
    assert f"Only 2 of {len(cpu)} runs" in r.caption("X.")
    sweep(full, committed, progress=False)  # complete full grid: shown, nothing trained
    r = book.run_chapter(chapter, tiny, progress=False)
    assert r.scale == "full" and len(r.frame) == len(full) and len(smoke) == n_smoke
    assert "full" in r.caption("X.") and "Only" not in r.caption("X.") and "cpu" in r.provenance


def test_every_chapter_is_in_the_toc_and_has_a_notebook():
    import yaml
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = {c["file"] for part in toc["parts"] for c in part["chapters"]}
    for chapter in chapters.names():
        assert f"book/{chapter}" in files and chapter in sources.names()
    assert set(chapters.GRIDS) <= set(chapters.names())
