"""`fasvlm export`: safetensors + config.json from a checkpoint; DeepSpeed ZeRO directory -> single-file checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from fasvlm.tools import export

REPO = Path(__file__).resolve().parents[1]


class _RandomFaces(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int):
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        g = torch.Generator().manual_seed(i)
        return {"pixel_values": torch.randn(3, self.size, self.size, generator=g), "label": torch.tensor(i % 2)}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A real Lightning checkpoint: one optimizer step of the tiny baseline (no CLI: no class path stored)."""
    import lightning as L

    from fasvlm.backbones import image_spec
    from fasvlm.systems.baseline import BaselineSystem

    root = tmp_path_factory.mktemp("export_ckpt")
    L.seed_everything(0)
    system = BaselineSystem(vision="tiny", lr=1e-3, scheduler="constant")
    trainer = L.Trainer(max_steps=1, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False, default_root_dir=root)
    loader = torch.utils.data.DataLoader(_RandomFaces(4, image_spec("tiny").size), batch_size=4)
    trainer.fit(system, loader)
    path = root / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_export_writes_safetensors_and_config(tiny_ckpt, tmp_path):
    from safetensors.torch import load_file

    out = tmp_path / "exported"
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(out),
                        "--class-path", "fasvlm.systems.baseline.BaselineSystem"]) == 0
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    tensors = load_file(str(out / "model.safetensors"))
    assert set(tensors) == set(ckpt["state_dict"]) and tensors
    for name, value in ckpt["state_dict"].items():
        assert torch.equal(tensors[name], value), name

    config = json.loads((out / "config.json").read_text())
    assert config["format"] == export.EXPORT_FORMAT
    assert config["class_path"] == "fasvlm.systems.baseline.BaselineSystem"
    assert config["hparams_name"] == "kwargs"
    assert config["hyper_parameters"] == {"vision": "tiny", "dropout": 0.0, "lr": 1e-3, "weight_decay": 0.05,
                                          "scheduler": "constant", "warmup_frac": 0.1}
    assert config["source"]["global_step"] == 1 and config["source"]["checkpoint"] == str(tiny_ckpt.resolve())
    assert config["weights"]["num_tensors"] == len(tensors)
    assert config["weights"]["num_elements"] == sum(t.numel() for t in tensors.values())

    # the export alone rebuilds the trained module: same scores as the module restored from the checkpoint
    from fasvlm.systems.baseline import BaselineSystem

    rebuilt = export.load_exported(out)
    reference = BaselineSystem.load_from_checkpoint(tiny_ckpt, map_location="cpu", weights_only=True).eval()
    x = torch.randn(2, 3, rebuilt.image_spec.size, rebuilt.image_spec.size)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), reference(x))
    # and differs from an untrained module (the weights really came from the export)
    with torch.no_grad():
        assert not torch.allclose(BaselineSystem(vision="tiny").eval()(x), reference(x))


def test_export_without_class_path_records_none_and_says_so(tiny_ckpt, tmp_path, capsys):
    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "e")]) == 0
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["class_path"] is None
    assert "no class path" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no class path"):
        export.load_exported(tmp_path / "e")


def test_export_class_path_from_lightning_cli_hparams(tiny_ckpt, tmp_path):
    """LightningCLI stores the class path as hyper_parameters['_class_path']: it lands in config.json, not in the
    constructor arguments."""
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    ckpt["hyper_parameters"] = {"_class_path": "fasvlm.systems.baseline.BaselineSystem",
                                "_instantiator": "lightning.pytorch.cli.instantiate_module", **ckpt["hyper_parameters"]}
    path = tmp_path / "cli.ckpt"
    torch.save(ckpt, path)
    assert export.main(["--ckpt", str(path), "--out", str(tmp_path / "e")]) == 0
    config = json.loads((tmp_path / "e" / "config.json").read_text())
    assert config["class_path"] == "fasvlm.systems.baseline.BaselineSystem"
    assert config["instantiator"] == "lightning.pytorch.cli.instantiate_module"
    assert "_class_path" not in config["hyper_parameters"] and config["hyper_parameters"]["vision"] == "tiny"
    assert export.main(["--ckpt", str(path), "--out", str(tmp_path / "f"), "--class-path", "x.Other"]) == 1


def test_export_dtype_cast(tiny_ckpt, tmp_path):
    from safetensors.torch import load_file

    assert export.main(["--ckpt", str(tiny_ckpt), "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    tensors = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.bfloat16}


class _Payload:
    """Unpickling this would create a file: proof that the exporter ran no code from the checkpoint."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_export_refuses_arbitrary_pickles(tiny_ckpt, tmp_path, capsys):
    ckpt = torch.load(tiny_ckpt, map_location="cpu", weights_only=True)
    marker = tmp_path / "code_ran"
    ckpt["hyper_parameters"]["evil"] = _Payload(str(marker))
    path = tmp_path / "evil.ckpt"
    torch.save(ckpt, path)
    assert export.main(["--ckpt", str(path), "--out", str(tmp_path / "e")]) == 1
    assert "weights_only" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "e" / "model.safetensors").exists()


def test_export_errors(tmp_path, tiny_ckpt, capsys):
    assert export.main(["--ckpt", str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "e")]) == 1
    torch.save({"epoch": 0}, tmp_path / "nostate.ckpt")
    assert export.main(["--ckpt", str(tmp_path / "nostate.ckpt"), "--out", str(tmp_path / "e")]) == 1
    assert "no 'state_dict'" in capsys.readouterr().err
    assert export.main(["--deepspeed-dir", str(tmp_path / "nodir"), "--out", str(tmp_path / "x.ckpt")]) == 1
    with pytest.raises(SystemExit):
        export.main(["--out", str(tmp_path)])  # one of --ckpt / --deepspeed-dir is required


def test_load_exported_detects_missing_trainable_weights(tiny_ckpt, tmp_path):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "e"
    export.export_checkpoint(tiny_ckpt, out, class_path="fasvlm.systems.baseline.BaselineSystem")
    tensors = load_file(str(out / "model.safetensors"))
    del tensors["model.head.1.weight"]
    save_file(tensors, str(out / "model.safetensors"))
    with pytest.raises(ValueError, match="model.head.1.weight"):
        export.load_exported(out)


# DeepSpeed: Lightning's DeepSpeedStrategy only runs on CUDA, but DeepSpeed itself runs on CPU (DS_ACCELERATOR=cpu). The
# helper below does what DeepSpeedStrategy.save_checkpoint does: engine.save_checkpoint(dir, client_state=<Lightning's
# checkpoint without state_dict/optimizer_states>, tag="checkpoint", exclude_frozen_parameters=True), after one ZeRO-2
# step of the tiny baseline with a frozen submodule. Its single-file conversion must then hold exactly the trainable
# weights after that step, plus Lightning's client state.
_DS_SCRIPT = textwrap.dedent(r"""
    import sys
    import deepspeed, deepspeed.comm.torch as ds_torch_comm, torch
    from safetensors.torch import save_file
    from fasvlm.systems.baseline import BaselineSystem

    # the shared-memory all-reduce op is a C++ JIT build (minutes on 2 cores) that a 1-process run never uses
    ds_torch_comm.build_shm_op = lambda: None
    ckpt_path, ds_dir, ref_path = sys.argv[1:4]
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    system = BaselineSystem(**ckpt["hyper_parameters"])
    system.load_state_dict(ckpt["state_dict"])
    system.model.encoder.embeddings.requires_grad_(False)  # a frozen part: must not be in the export
    trainable = [p for p in system.parameters() if p.requires_grad]
    engine, _, _, _ = deepspeed.initialize(
        model=system, optimizer=torch.optim.AdamW(trainable, lr=1e-2),
        config={"train_micro_batch_size_per_gpu": 2, "zero_optimization": {"stage": 2}})
    size = system.image_spec.size
    loss = engine(torch.randn(2, 3, size, size)).sum()
    engine.backward(loss)
    engine.step()
    client = {k: v for k, v in ckpt.items() if k not in ("state_dict", "optimizer_states")}
    client["global_step"] = 7
    engine.save_checkpoint(ds_dir, client_state=client, tag="checkpoint", exclude_frozen_parameters=True)
    save_file({n: p.detach().float().contiguous() for n, p in engine.module.named_parameters() if p.requires_grad},
              ref_path)
    print("frozen:", sorted(n for n, p in engine.module.named_parameters() if not p.requires_grad))
""")


def _deepspeed_cpu_env() -> dict[str, str]:
    import socket

    with socket.socket() as s:  # a free port for the 1-process gloo group
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK="0",
               LOCAL_RANK="0", WORLD_SIZE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def test_deepspeed_directory_to_single_file(tiny_ckpt, tmp_path):
    pytest.importorskip("deepspeed")
    from safetensors.torch import load_file

    ds_dir, ref = tmp_path / "last.ckpt", tmp_path / "reference.safetensors"
    script = tmp_path / "ds_step.py"
    script.write_text(_DS_SCRIPT)
    proc = subprocess.run([sys.executable, str(script), str(tiny_ckpt), str(ds_dir), str(ref)], cwd=tmp_path,
                          env=_deepspeed_cpu_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert (ds_dir / "latest").is_file() and (ds_dir / "checkpoint").is_dir()

    out = tmp_path / "converted.ckpt"
    assert export.main(["--deepspeed-dir", str(ds_dir), "--out", str(out)]) == 0
    converted = torch.load(out, map_location="cpu", weights_only=True)  # the converted file is a plain checkpoint
    reference = load_file(str(ref))
    state = converted["state_dict"]
    from fasvlm.systems.baseline import BaselineSystem

    module = BaselineSystem(vision="tiny")
    buffers = {n for n, _ in module.named_buffers()}
    frozen = {n for n, _ in module.named_parameters() if n.startswith("model.encoder.embeddings.")}
    assert frozen and not frozen & set(state), "frozen parameters leaked into the conversion"
    assert set(state) - buffers == set(reference)  # exactly the trainable parameters (+ buffers)
    for name, value in reference.items():
        assert torch.equal(state[name].float(), value), name
    assert "optimizer_states" not in converted
    assert converted["hyper_parameters"] == torch.load(tiny_ckpt, weights_only=True)["hyper_parameters"]
    assert converted["global_step"] == 7

    # and the converted file exports like any checkpoint
    assert export.main(["--ckpt", str(out), "--out", str(tmp_path / "e"),
                        "--class-path", "fasvlm.systems.baseline.BaselineSystem"]) == 0
    assert set(load_file(str(tmp_path / "e" / "model.safetensors"))) == set(state)
    # --ckpt also takes the DeepSpeed directory itself (converted on the fly); config.json names the directory
    assert export.main(["--ckpt", str(ds_dir), "--out", str(tmp_path / "d")]) == 0
    assert json.loads((tmp_path / "d" / "config.json").read_text())["source"]["checkpoint"] == str(ds_dir.resolve())


def test_save_pretrained_and_from_pretrained_round_trip(tmp_path):
    """Hugging Face style directories on the systems; the same format `fasvlm export` writes and predict reads."""
    from fasvlm.systems.baseline import BaselineSystem
    from fasvlm.systems.instructflip import InstructFLIPSystem

    torch.manual_seed(0)
    system = BaselineSystem(vision="tiny").eval()
    out = system.save_pretrained(tmp_path / "pretrained", threshold=0.42)
    assert (out / "model.safetensors").stat().st_mode & 0o777 == 0o644
    again = BaselineSystem.from_pretrained(out)
    x = torch.randn(3, 3, system.image_spec.size, system.image_spec.size)
    with torch.no_grad():
        torch.testing.assert_close(again(x), system(x))
    assert json.loads((out / "config.json").read_text())["threshold"]["value"] == 0.42
    with pytest.raises(ValueError, match="not a fasvlm.systems.instructflip.InstructFLIPSystem"):
        InstructFLIPSystem.from_pretrained(out)
    # a class path that is not in the registry is never imported
    config = json.loads((out / "config.json").read_text())
    config["class_path"] = "subprocess.Popen"
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not a registered fasvlm system"):
        export.load_exported(out)
