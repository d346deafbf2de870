"""Install the SPL replication: packages ``replication``, ``kernels``, ``gan_tf_port`` and the ``spl`` CLI."""
from setuptools import find_packages, setup

# torch/torchvision are pinned as a pair that installs together from PyPI
# (PyPI's torchvision needs PyPI's torch; its CUDA build runs on CPU too).
INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "numpy>=1.26",
    "numba>=0.61",
    "numba-cuda>=0.15",
    "cupy-cuda13x>=13.6",
    "h5py>=3.10",
    "opencv-python-headless>=4.9",
    "click>=8.1",
    "scikit-learn>=1.4",
    "tqdm>=4.66",
    "matplotlib>=3.8",
    "pyyaml>=6.0",
    "cloudpickle>=3.0",   # steps are closures: pickled for --jobs workers and submitit jobs
    "submitit>=1.5",      # --launcher slurm | submitit-local
]

setup(
    name="spl-replication",
    version="0.1.0",
    description=("Replication of 'SPL: Exploiting Unlabeled Data for Multi-Label Image Classification' "
                 "(Zhang et al., ICME 2019)"),
    python_requires=">=3.10",
    packages=find_packages(include=["replication", "replication.*", "kernels", "kernels.*", "gan_tf_port",
                                    "gan_tf_port.*"]),
    package_data={"kernels": ["cuda/*.cu"], "replication": ["presets/*.yaml", "presets/*/*.yaml"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # ruff is pinned: its rules change between releases, and `make lint` must give the same verdict.
        "dev": ["pytest>=8", "hypothesis>=6.100", "pytest-timeout>=2.3", "pytest-xdist>=3.5", "ruff==0.17.6",
                "timm>=1.0"],
        "timm": ["timm>=1.0"],
    },
    entry_points={"console_scripts": ["spl=replication.cli:main"]},
)
