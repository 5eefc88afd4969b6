"""Shared fixtures: small datasets written in the official layouts, CPU-only settings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


def write_celeba_layout(root: Path, *, n_train_subjects: int = 12, n_test_subjects: int = 4, per_subject: int = 6,
                        size: int = 96, seed: int = 0) -> dict[str, dict[str, list[int]]]:
    """A small CelebA-Spoof release: Data/{train,test}/<subject>/{live,spoof}/<id>.{jpg,png} + _BB.txt + metas.

    Attack images carry a visible stripe pattern, so a tiny model can learn them. Returns the label JSON contents.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    labels: dict[str, dict[str, list[int]]] = {"train": {}, "test": {}}
    image_id = 0
    subjects = {"train": range(100, 100 + n_train_subjects), "test": range(900, 900 + n_test_subjects)}
    for split, subs in subjects.items():
        ext = "jpg" if split == "train" else "png"
        for subject in subs:
            for k in range(per_subject):
                spoof = k % 2 == 1
                folder = root / "Data" / split / str(subject) / ("spoof" if spoof else "live")
                folder.mkdir(parents=True, exist_ok=True)
                img = rng.integers(80, 170, (size, size, 3)).astype(np.uint8)
                if spoof:
                    img[::3] = 250
                Image.fromarray(img).save(folder / f"{image_id:06d}.{ext}")
                (folder / f"{image_id:06d}_BB.txt").write_text("40 30 150 170 0.99\n")
                spoof_type = (1, 7, 10)[k // 2 % 3] if spoof else 0
                vec = [0] * 40 + ([spoof_type, 1 + k % 4, 1 + k % 2, 1] if spoof else [0, 0, 0, 0])
                labels[split][f"Data/{split}/{subject}/{'spoof' if spoof else 'live'}/{image_id:06d}.{ext}"] = vec
                image_id += 1
    metas = root / "metas" / "intra_test"
    metas.mkdir(parents=True, exist_ok=True)
    for split, content in labels.items():
        (metas / f"{split}_label.json").write_text(json.dumps(content))
    return labels


@pytest.fixture(scope="session")
def celeba_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("celeba") / "CelebA_Spoof"
    write_celeba_layout(root)
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The project's synthetic generator, `tiny` preset, generated once per test session."""
    from fasvlm.data_modules.synthetic import generate

    out = tmp_path_factory.mktemp("synthetic") / "synthetic"
    generate(out, preset="tiny", seed=0, workers=2)
    return out


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    """A tiny CLIP written as `make tiny-clip` writes data/tiny_clip (random weights: the tests need its format, not
    its pretraining), for configs that load it (conf/ifas/tiny.yaml)."""
    import torch

    from fasvlm.backbones import load_clip, save_clip

    torch.manual_seed(0)
    model, tokenizer = load_clip("tiny")
    return save_clip(model, tokenizer, model.config.vision_config.image_size, tmp_path_factory.mktemp("clip") / "tiny_clip")



@pytest.fixture(scope="session")
def wheel_site(tmp_path_factory) -> Path:
    """The project built as a wheel and installed into an empty target directory (no package-dir mapping: there,
    fasvlm.data_modules and fasvlm.callbacks are plain subpackages). Returns the target directory."""
    import shutil
    import subprocess
    import sys

    base = tmp_path_factory.mktemp("wheel")
    # build from a copy: an in-tree build leaves build/lib behind, whose stale modules a later wheel would ship
    src = base / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "data", "build", "dist",
                                                             "*.egg-info", "__pycache__", ".whl-gpu", "lightning_logs"))
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(src)], check=True)
    (wheel,) = dist.glob("fasvlm-*.whl")
    target = base / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True)
    return target
