"""Package layout: the repository folders map onto import packages.

``selectkit/`` -> ``selectkit``, ``plugins/`` -> ``selectkit_plugins``, ``conf/`` -> ``selectkit_conf``,
``hydra_plugins/`` -> ``hydra_plugins`` (a namespace package Hydra scans).
"""

from setuptools import find_namespace_packages, setup

LAYOUT = {"selectkit": "selectkit", "selectkit_plugins": "plugins", "selectkit_conf": "conf", "hydra_plugins": "hydra_plugins"}


def _packages():
    names = []
    for package, folder in LAYOUT.items():
        names.append(package)
        found = find_namespace_packages(folder, exclude=["*tests*", "*__pycache__*"])
        names += [f"{package}.{sub}" for sub in found]
    return names


setup(
    packages=_packages(),
    package_dir={package: folder for package, folder in LAYOUT.items()},
)
