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
    result = json.loads(proc.stdout)  # stdout holds the JSON object and nothing else
    assert KEYS <= result.keys()
    assert result["flops_per_sample"] > 0 and result["peak_flops"] > 0
    assert result["train_samples_per_s"] > 0 and result["infer_images_per_s"] > 0
    assert 0 < result["mfu"] < 1
    assert result["steps"] == 2 and result["data"] == "random"
    if "ifas" in config:  # issue 20: the prompt prefix encoded once and reused through the KV cache
        flops = result["ifas_scoring_flops_per_image"]
        assert 0 < flops["reused_prefix"] < flops["full_prompt"] and 0 < flops["reduction"] < 1
        assert flops["prompt_tokens"]["prefix_tokens"] > 0
    else:
        assert "ifas_scoring_flops_per_image" not in result


def test_bench_data_measures_both_placements_against_the_decode_rate(tmp_path, celeba_root):
    """`fasvlm bench --data`: decode limit, loader images/s and stage costs of both placements on the config's data,
    rendered full-size photographs and crops stored as prepare stores them; one JSON object on stdout."""
    from fasvlm.data_modules.transforms import carrier_size

    synthetic = tmp_path / "data" / "synthetic"
    synthetic.mkdir(parents=True)
    for name in ("celeba_spoof", "synth_lowlight", "synth_phonecam"):  # conf/quickstart.yaml's three domains
        (synthetic / name).symlink_to(celeba_root)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "fasvlm.cli", "bench", "--data", "--config", str(REPO / "conf/quickstart.yaml"),
         "--data-images", "8", "--data-min-items", "8", "--full-size-images", "2", "--full-size", "320x240", "--image-size", "32"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(proc.stdout)
    assert result["mode"] == "data" and result["image_size"] == 32 and result["carrier_size"] == carrier_size(32)
    assert set(result["sets"]) == {"config", "full_size", "prepared"}
    for name, res in result["sets"].items():
        for path in ("train", "eval"):
            assert res[path]["decode_ms"] > 0 and res[path]["decode_limit_images_per_s"] > 0, (name, path)
            before, after = res[path]["before"], res[path]["after"]
            assert before["images_per_s"] > 0 and after["images_per_s"] > 0 and after["ratio_to_decode"] > 0
            assert set(before["top_costs_ms"]) == {"decode", "resize", "colour_jitter", "to_tensor_normalise"}
            assert set(after["top_costs_ms"]) == {"decode", "cut", "to_tensor"} and after["device_ms_per_image"] > 0
        assert result["summary"][name]["eval"]["ratio_after"] == res["eval"]["after"]["ratio_to_decode"]
    # raw images: the worker resizes exactly as before; stored crops: the device resamples (Pillow's 8-bit rounding)
    assert result["sets"]["config"]["eval_difference"]["max_abs_pixels"] == 0.0
    assert result["sets"]["prepared"]["eval_difference"]["max_abs_pixels"] <= 1.5 / 255
    assert result["sets"]["prepared"]["file_size"] == f"{carrier_size(32)}x{carrier_size(32)}"
    assert result["sets"]["full_size"]["file_size"] == "320x240"
    formats = result["formats"]
    assert set(formats) == {"png", "jpeg_q95", "webp_q95", "webp_lossless"}
    assert formats["png"]["max_abs_error"] == formats["webp_lossless"]["max_abs_error"] == 0
    assert formats["jpeg_q95"]["mean_abs_error"] > 0 and all(f["decode_ms"] > 0 for f in formats.values())
