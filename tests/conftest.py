"""Shared fixtures: a tiny SmolVLM and a small synthetic dataset, built once per test session."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest

from data.synthetic import SyntheticConfig, generate_dataset
from models.standin import build_standin
from models.tiny import build_tiny_smolvlm

SMALL = SyntheticConfig(
    num_videos=6, min_duration=8.0, max_duration=10.0, min_events=1, max_events=2, max_event_len=2.5, seed=7
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return build_tiny_smolvlm(tmp_path_factory.mktemp("tiny-smolvlm"))


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """(root, split paths, config) of a 6-video synthetic dataset with every distractor on."""
    root = tmp_path_factory.mktemp("synthetic")
    cfg = SyntheticConfig(**{**SMALL.__dict__, "pan_prob": 1.0, "flicker_prob": 1.0, "cut_prob": 1.0})
    return root, generate_dataset(root, cfg, progress=False), cfg


@pytest.fixture(scope="session")
def standin_256m(tmp_path_factory):
    """Random weights in SmolVLM2-256M-Video-Instruct's published architecture (slow tests)."""
    return build_standin(tmp_path_factory.mktemp("standin") / "smolvlm2-256m", "smolvlm2-256m")


@pytest.fixture
def read_only_dir(tmp_path):
    """An empty folder this process cannot write in (skips where permissions do not stop it: root)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("this user writes in read-only folders (root); the tests of a file in the way cover root")
        yield folder
    finally:
        folder.chmod(0o755)
