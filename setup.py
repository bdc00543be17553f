"""Packaging for aspects-sink, an Open edX plugin that sends platform data to ClickHouse."""

import os
import re

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def load_requirements(*requirements_paths):
    """
    Return the requirement names found in the given ``.in`` files.

    Constraint (``-c``) and include (``-r``) lines are followed so the package's install
    requirements stay exactly what ``requirements/base.in`` declares, unpinned.
    """
    requirements = []
    for path in requirements_paths:
        with open(os.path.join(HERE, path), encoding="utf-8") as reqs:
            for raw_line in reqs:
                requirement = raw_line.split("#", 1)[0].strip()
                if requirement and not requirement.startswith(("-c", "-r")):
                    requirements.append(requirement)
    return requirements


def get_version():
    with open(os.path.join(HERE, "aspects_sink", "__init__.py"), encoding="utf-8") as init:
        return re.search(r'^__version__ = "([^"]+)"', init.read(), re.M).group(1)


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as readme:
    LONG_DESCRIPTION = readme.read()

setup(
    name="aspects-sink",
    version=get_version(),
    description="Open edX plugin: course, user and enrollment data and xAPI statements into ClickHouse for Aspects",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    license="AGPL-3.0",
    packages=find_packages(include=["aspects_sink", "aspects_sink.*"]),
    include_package_data=True,
    python_requires=">=3.11",
    install_requires=load_requirements("requirements/base.in"),
    extras_require={"chdb": ["clickhouse-connect[chdb]"]},
    entry_points={
        "lms.djangoapp": ["aspects_sink = aspects_sink.apps:AspectsSinkConfig"],
        "cms.djangoapp": ["aspects_sink = aspects_sink.apps:AspectsSinkConfig"],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
    ],
    zip_safe=False,
)
