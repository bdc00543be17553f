"""The package as pip installs it: every folder of code is a package that setup.py ships."""

from pathlib import Path

from setuptools import find_packages

REPO = Path(__file__).resolve().parents[2]


def test_every_folder_of_code_is_shipped():
    shipped = set(find_packages(str(REPO), include=["aspects_sink", "aspects_sink.*"]))
    with_code = {
        ".".join(folder.relative_to(REPO).parts)
        for folder in (REPO / "aspects_sink").rglob("*")
        if folder.is_dir() and folder.name != "__pycache__" and any(folder.glob("*.py"))
    }
    assert with_code - shipped == set()
