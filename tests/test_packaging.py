"""What pip and conda install matches pyproject.toml, and the package ships its data files."""

import glob

import tomllib
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import REPO

SRC = REPO / "src"


def pyproject():
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_conda_env_mirrors_pyproject_dependencies():
    # envs/skillscale.yaml copies [project].dependencies by hand for `--software-deployment-method conda`
    wanted = {canonicalize_name(r.name): r for r in map(Requirement, pyproject()["project"]["dependencies"])}
    env = yaml.safe_load((REPO / "envs" / "skillscale.yaml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e .." in pip, "envs/skillscale.yaml no longer installs skillscale itself (-e ..)"
    have = {canonicalize_name(r.name): r for r in (Requirement(s) for s in pip if not s.startswith("-"))}
    problems = [f"missing: {r}" for name, r in wanted.items() if name not in have]
    problems += [
        f"different: {have[name]} (pyproject.toml: {r})"
        for name, r in wanted.items()
        if name in have
        and (have[name].specifier, have[name].extras, have[name].marker) != (r.specifier, r.extras, r.marker)
    ]
    problems += [f"not in pyproject.toml: {r}" for name, r in have.items() if name not in wanted]
    assert not problems, "envs/skillscale.yaml drifted from pyproject.toml's [project].dependencies:\n" + "\n".join(
        problems
    )


def test_package_data_ships_every_task_file_and_the_schema():
    # setuptools' package-data: patterns are globs relative to the package's folder ("*" stops at "/")
    shipped = set()
    for package, patterns in pyproject()["tool"]["setuptools"]["package-data"].items():
        root = SRC.joinpath(*package.split("."))
        shipped |= {root / p for pattern in patterns for p in glob.glob(pattern, root_dir=root, recursive=True)}
    tasks = SRC / "skillscale" / "evaluate" / "tasks"
    needed = [p for p in tasks.rglob("*") if p.is_file() and p.suffix != ".pyc" and "__pycache__" not in p.parts]
    needed.append(SRC / "skillscale" / "config" / "schema.yaml")
    missing = [str(p.relative_to(REPO)) for p in sorted(needed) if p not in shipped]
    assert not missing, "no glob in pyproject.toml's [tool.setuptools.package-data] matches:\n" + "\n".join(missing)
    dangling = [str(p.relative_to(REPO)) for p in needed if not p.exists()]  # schema.yaml is a symlink
    assert not dangling, "shipped files that do not resolve:\n" + "\n".join(dangling)
