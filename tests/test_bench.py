"""`fasvlm bench` prints its JSON for both VLM systems' tiny configs on CPU (measures speed; asserts no speed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO

KEYS = {"flops_per_sample", "train_samples_per_s", "infer_images_per_s", "peak_mem_bytes", "dataloader_wait_frac",
        "peak_flops", "mfu", "device"}


@pytest.mark.parametrize("config", ["conf/ifas/tiny.yaml", "conf/instructflip/tiny.yaml"])
def test_bench_prints_json(config, tmp_path, tiny_clip_dir):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny_clip").symlink_to(tiny_clip_dir)  # conf/ifas/tiny.yaml's frozen CLIP
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "fasvlm.cli", "bench", "--config", str(REPO / config), "--steps", "2", "--warmup", "1",
         "--infer-batches", "1", "--batch-size", "4", "--random-data"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert KEYS <= result.keys()
    assert result["flops_per_sample"] > 0 and result["peak_flops"] > 0
    assert result["train_samples_per_s"] > 0 and result["infer_images_per_s"] > 0
    assert 0 < result["mfu"] < 1
    assert result["steps"] == 2 and result["data"] == "random"
