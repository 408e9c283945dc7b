"""code_version() marks results made by edited package code, wherever the checkout is."""

import os
import subprocess
import sys

from conftest import REPO


def code_version(clone):
    env = dict(os.environ, PYTHONPATH=str(clone / "src"))
    p = subprocess.run(
        [sys.executable, "-c", "from skillscale.common import code_version; print(code_version())"],
        cwd=clone.parent,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return p.stdout.strip()


def git(clone, *args):
    return subprocess.run(["git", "-C", str(clone), *args], capture_output=True, text=True, check=True).stdout.strip()


def test_code_version_dirty_only_for_package_edits(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    # the clone has the last commit; code_version as it is in this working tree is what is tested
    common = "src/skillscale/common.py"
    (clone / common).write_text((REPO / common).read_text())
    git(
        clone,
        "-c",
        "user.name=test",
        "-c",
        "user.email=test@example.org",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        "working tree's common.py",
        common,
    )
    commit = git(clone, "rev-parse", "--short", "HEAD")
    assert code_version(clone) == commit

    module = clone / "src" / "skillscale" / "plan" / "__init__.py"
    original = module.read_text()
    module.write_text(original + "# an edit\n")
    assert code_version(clone) == f"{commit}-dirty"

    module.write_text(original)
    (clone / "README.md").write_text((clone / "README.md").read_text() + "\nan edit\n")
    assert code_version(clone) == commit
