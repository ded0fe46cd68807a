"""pyproject.toml, environment.yml and constraints.txt describe the same environment."""
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent


def pyproject_requirements():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    return {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in reqs}


def conda_requirements():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    out = {}
    for dep in env["dependencies"]:
        for spec in (dep["pip"] if isinstance(dep, dict) else [dep]):
            if spec.split(">")[0].split("=")[0].split("<")[0] in ("python", "pip"):
                continue
            r = Requirement(spec)
            out[canonicalize_name(r.name)] = r.specifier
    return out


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    assert conda_requirements() == pyproject_requirements()


def test_constraints_pin_every_dependency_within_its_range():
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            r = Requirement(line)
            pins[canonicalize_name(r.name)] = next(iter(r.specifier)).version
    for name, spec in pyproject_requirements().items():
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert spec.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {spec}"
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
