"""Packaging beside pyproject.toml, for the one thing it cannot say: the configs at the repository's top level
(conf/) ship inside the wheel as the package data ``deeplab_mobile/conf`` (``config.paths.config_dir`` reads them
there when no checkout is beside the package)."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["deeplab_mobile", "deeplab_mobile.*"]), "deeplab_mobile.conf"],
    package_dir={"deeplab_mobile.conf": "conf"},
    package_data={"deeplab_mobile.conf": ["*.yaml", "**/*.yaml"]},
)
