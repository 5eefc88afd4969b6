"""`fasvlm predict --model ... --input ...` on a user's own files: runs, checkpoints, exports and ONNX; images, videos,
folders; no face; unreadable files; video aggregation; the run's threshold; I-FAS judgments that agree with the
decision; the HTML report in a real headless browser.

The models are trained through the real CLI for a few steps on the project's synthetic data; prediction then runs
from a directory where that data no longer exists.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fasvlm.cli", *args], cwd=cwd, env=ENV, capture_output=True,
                          text=True, timeout=900)


def _train(work: Path, config: str, run: Path) -> None:
    out = _cli("fit", "--config", str(REPO / config), "--trainer.default_root_dir", str(run),
               "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2",
               "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
               "--data.init_args.batch_size", "8", "--data.init_args.num_workers", "0", cwd=work)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run / "checkpoints" / "best.ckpt").is_file()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, synthetic_root, tiny_clip_dir) -> dict[str, Path]:
    """Trained runs copied out of their workdir, whose data/ link is then removed (predict needs no training data)."""
    work = tmp_path_factory.mktemp("predict_train")
    (work / "data").mkdir()
    (work / "data" / "synthetic").symlink_to(synthetic_root)
    (work / "data" / "tiny_clip").symlink_to(tiny_clip_dir)
    kept = tmp_path_factory.mktemp("predict_runs")
    out = {}
    for name, config in (("instructflip", "conf/instructflip/tiny.yaml"), ("ifas", "conf/ifas/tiny.yaml")):
        _train(work, config, work / "runs" / name)
        shutil.copytree(work / "runs" / name, kept / name)
        out[name] = kept / name
    (work / "data" / "synthetic").unlink()
    out["workdir"] = work  # still holds data/tiny_clip: I-FAS's frozen CLIP is part of the model, by path
    return out


def _write_mp4(path: Path, frames: list[np.ndarray]) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, synthetic_root) -> dict[str, Path]:
    """A folder of face images never used in training (the synthetic test split), an mp4 made from them, a file
    that is not an image, and a featureless image (no face)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("user_files")
    photos = root / "photos"
    photos.mkdir()
    test_images = sorted(p for p in (synthetic_root / "celeba_spoof" / "Data" / "test").rglob("*")
                         if p.suffix in (".jpg", ".png"))[:3]
    assert len(test_images) == 3
    for i, src in enumerate(test_images):
        shutil.copy(src, photos / f"face{i}{src.suffix}")
    frames = [np.asarray(Image.open(p).convert("RGB").resize((96, 96))) for p in test_images] * 3
    _write_mp4(root / "clip.mp4", frames)
    (root / "broken.jpg").write_bytes(b"this is not a JPEG")
    Image.fromarray(np.full((80, 80, 3), 128, np.uint8)).save(root / "blank.png")
    return {"photos": photos, "video": root / "clip.mp4", "broken": root / "broken.jpg", "blank": root / "blank.png"}


def _rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def test_images_video_and_unreadable_file_with_the_runs_threshold(runs, inputs, tmp_path):
    out = tmp_path / "scored"
    res = _cli("predict", "--model", str(runs["instructflip"]), "--input", str(inputs["photos"]),
               str(inputs["video"]), str(inputs["broken"]), str(tmp_path / "missing.jpg"), "--out", str(out),
               "--frames", "4", cwd=tmp_path)
    assert res.returncode == 3, res.stderr[-2000:]  # some inputs failed: listed, the rest scored
    rows = _rows(out)
    ckpt = torch.load(runs["instructflip"] / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    stored = ckpt["callbacks"]["FASMetricsCallback"]["val_threshold"]
    assert all(r["threshold"] == pytest.approx(stored) for r in rows)
    assert all(r["threshold_source"].startswith("source validation") for r in rows)
    images = [r for r in rows if r["input"].startswith(str(inputs["photos"]))]
    assert len({r["input"] for r in images}) == 3 and all(r["frame"] is None for r in images)
    for r in rows:
        assert 0.0 <= r["score"] <= 1.0
        assert r["decision"] == ("attack" if r["score"] >= r["threshold"] else "live")
        if r["detector"] is not None:
            assert "cue_attack_share" in r and 0.0 <= r["cue_attack_share"] <= 1.0
    video = [r for r in rows if r["input"] == str(inputs["video"])]
    frames = [r for r in video if r["frame"] is not None]
    (agg,) = [r for r in video if r["frame"] is None]
    assert agg["n_frames"] == 4 == len({r["frame"] for r in frames})
    firsts = {}
    for r in frames:
        firsts.setdefault(r["frame"], r["score"])
    assert agg["score"] == pytest.approx(np.mean(list(firsts.values())))
    errors = (out / "errors.csv").read_text()
    assert "broken.jpg" in errors and "unreadable" in errors and "missing.jpg" in errors
    assert (out / "predictions.csv").read_text().count("\n") == len(rows) + 1
    # a second run into the same folder is refused (never overwrite earlier results silently)
    again = _cli("predict", "--model", str(runs["instructflip"]), "--input", str(inputs["photos"]), "--out", str(out),
                 cwd=tmp_path)
    assert again.returncode == 2 and "already holds" in again.stderr


def test_no_face_gives_a_flagged_centre_crop_or_a_listed_skip(runs, inputs, tmp_path):
    res = _cli("predict", "--model", str(runs["instructflip"]), "--input", str(inputs["blank"]), "--out",
               str(tmp_path / "a"), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    (row,) = _rows(tmp_path / "a")
    assert row["detector"] == "none" and row["box"] is None and row["face"] is None
    res = _cli("predict", "--model", str(runs["instructflip"]), "--input", str(inputs["blank"]), "--out",
               str(tmp_path / "b"), "--no-face", "skip", cwd=tmp_path)
    assert res.returncode == 1  # nothing was scored
    assert _rows(tmp_path / "b") == [] and "no face found" in (tmp_path / "b" / "errors.csv").read_text()


def test_export_and_onnx_give_the_checkpoints_scores(runs, inputs, tmp_path):
    exported = tmp_path / "export"
    res = _cli("export", "--ckpt", str(runs["instructflip"] / "checkpoints" / "best.ckpt"), "--out", str(exported),
               "--onnx", cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    for name in ("model.safetensors", "config.json", "README.md", "model.onnx"):
        assert (exported / name).stat().st_mode & 0o777 == 0o644, name
    config = json.loads((exported / "config.json").read_text())
    assert config["threshold"]["value"] is not None and config["preprocessing"]["size"] > 0
    card = (exported / "README.md").read_text()
    assert "## Test metrics" in card and "## Intended use and limits" in card and "threshold" in card
    scores = {}
    for kind, model in (("ckpt", runs["instructflip"]), ("export", exported), ("onnx", exported / "model.onnx")):
        res = _cli("predict", "--model", str(model), "--input", str(inputs["photos"]), str(inputs["video"]),
                   "--frames", "3", "--out", str(tmp_path / kind), cwd=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        scores[kind] = [(r["input"], r["frame"], r["face"], r["score"]) for r in _rows(tmp_path / kind)]
    for kind in ("export", "onnx"):
        assert [k[:3] for k in scores[kind]] == [k[:3] for k in scores["ckpt"]]
        diff = max(abs(a[3] - b[3]) for a, b in zip(scores[kind], scores["ckpt"]))
        assert diff <= 1e-4, (kind, diff)


def test_onnx_parity_on_random_batches(runs, tmp_path):
    import onnxruntime as ort

    from fasvlm.tools.export import export_checkpoint, export_onnx, load_exported

    out = tmp_path / "export"
    export_checkpoint(runs["instructflip"] / "checkpoints" / "best.ckpt", out)
    path = export_onnx(out)
    system = load_exported(out)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    size = system.image_spec.size
    for batch in (1, 5):  # dynamic batch
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            ref = system(x)["score"].numpy()
        (got,) = session.run(["p_attack"], {"pixel_values": x.numpy()})
        assert got.shape == (batch,)
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_ifas_judgment_agrees_with_the_decision(runs, inputs, tmp_path):
    out = tmp_path / "ifas"
    res = _cli("predict", "--model", str(runs["ifas"]), "--input", str(inputs["photos"]), "--out", str(out),
               "--max-new-tokens", "6", "--threshold", "0.5", cwd=runs["workdir"])
    assert res.returncode == 0, res.stderr[-2000:]
    rows = _rows(out)
    assert rows and all("explanation" in r for r in rows)
    for r in rows:
        assert r["judgment"] == ("No" if r["decision"] == "attack" else "Yes")
        assert r["threshold"] == 0.5 and r["threshold_source"] == "--threshold"


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_html_report_in_a_headless_browser(runs, inputs, tmp_path):
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("CI must have Chromium (.ci/run installs Debian's chromium): the report is checked in a browser")
        pytest.skip("no Chromium here (apt-get install chromium); CI installs it")
    out = tmp_path / "scored"
    res = _cli("predict", "--model", str(runs["instructflip"]), "--input", str(inputs["photos"]),
               str(inputs["video"]), "--frames", "3", "--out", str(out), cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    page = (out / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    rows = dom.stdout.count('<tr class="row"')
    assert rows == 4  # one per input: three images, one video (its aggregate)
    assert dom.stdout.count('alt="aligned crop"') == 4
    shot = tmp_path / "report.png"
    cap = subprocess.run([browser, *flags, f"--screenshot={shot}", "--window-size=1200,900", page],
                         capture_output=True, text=True, timeout=120)
    assert cap.returncode == 0 and shot.is_file()
    from PIL import Image

    with Image.open(shot) as img:
        arr = np.asarray(img.convert("L"))
    assert img.size == (1200, 900) and arr.std() > 5  # a rendered page, not a blank canvas


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_answers_on_its_http_api(runs, inputs, tmp_path):
    pytest.importorskip("gradio", reason="the demo extra (pip install 'fasvlm[demo]')")
    import time

    from gradio_client import Client, handle_file

    port = _free_port()
    env = {**ENV, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    server = subprocess.Popen([sys.executable, "-m", "fasvlm.cli", "demo", "--model", str(runs["instructflip"]),
                               "--port", str(port), "--frames", "3"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + 240
        client = None
        while client is None:
            if server.poll() is not None:
                pytest.fail(f"demo exited: {server.stdout.read()[-3000:]}")
            try:
                client = Client(url, verbose=False)
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        image = next(inputs["photos"].iterdir())
        decision, score, face, cue, details = client.predict(handle_file(str(image)), api_name="/predict")
        assert decision.split()[0] in ("LIVE", "ATTACK") and 0.0 <= score <= 1.0
        assert face and Path(face).is_file() and cue and "cue map" in details
        decision, score, *_ = client.predict(handle_file(str(inputs["video"])), api_name="/predict")
        assert "video: mean of 3 frames" in _[-1] and 0.0 <= score <= 1.0
    finally:
        server.terminate()
        server.wait(timeout=30)
