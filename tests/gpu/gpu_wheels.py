"""`make gpu-wheels`: the wheels a bare GPU machine lacks (for its Python 3.12), for `make gpu-check` to install.

The GPU machine of the device tool has torch, lightning, transformers, peft, torchmetrics, tensorboard, timm and
onnxruntime but not jsonargparse (LightningCLI), deepspeed and deepspeed's pydantic and hjson. This writes exactly the
versions installed in this venv (the versions the CPU tests ran with), plus setuptools and wheel to build the project
there without an index. DeepSpeed is published as a source distribution only; it is built here into a pure-Python
wheel (no compiled ops: ZeRO with the project's torch optimizers needs none, and DeepSpeed compiles what it needs at
run time). Not carried: `datasets` and PyAV (the gpu tests write their data without the synthetic generator's video
code; PyAV's wheel alone is 36 MB of the 64 MiB a device call carries).

The folder is written next to the target and renamed into place; an existing folder is replaced only if this script
wrote it (it holds the marker file), otherwise the script refuses.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import subprocess
import sys
import tempfile
from pathlib import Path

MARKER = ".fasvlm-gpu-wheels"
LIMIT = 64 * 2**20  # what one device call carries, working tree included
# distribution names -> binary wheels for CPython 3.12 on manylinux x86-64
BINARY = ["jsonargparse", "docstring_parser", "typeshed_client", "pydantic", "pydantic_core", "annotated_types",
          "typing_inspection", "typing_extensions", "hjson", "setuptools", "wheel", "packaging"]
SOURCE_ONLY = ["deepspeed"]
PLATFORM = ["--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux2014_x86_64"]


def pinned(name: str) -> str:
    try:
        return f"{name}=={md.version(name)}"
    except md.PackageNotFoundError as err:
        raise SystemExit(f"gpu-wheels: {name} is not installed in {sys.prefix}; run `make venv` first") from err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(".whl-gpu"))
    args = p.parse_args(argv)
    out = args.out.resolve()
    if out.exists() and not (out / MARKER).is_file():
        raise SystemExit(f"gpu-wheels: {out} exists and was not written by gpu-wheels (no {MARKER}); "
                         "move it away or pass --out")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=out.name + ".", dir=out.parent) as tmp:
        stage = Path(tmp) / "wheels"
        stage.mkdir()
        cmd = [*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", *PLATFORM, "-d", str(stage), *map(pinned, BINARY)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        cmd = [*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(stage), *map(pinned, SOURCE_ONLY)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
        for whl in stage.glob("*.whl"):
            if not (whl.name.endswith("-none-any.whl") or "-cp312-" in whl.name):
                raise SystemExit(f"gpu-wheels: {whl.name} is neither pure Python nor built for CPython 3.12")
        (stage / MARKER).write_text("written by `make gpu-wheels` (tests/gpu/gpu_wheels.py)\n")
        size = sum(f.stat().st_size for f in stage.iterdir())
        if size > LIMIT:
            raise SystemExit(f"gpu-wheels: {size / 2**20:.1f} MiB exceeds the {LIMIT / 2**20:.0f} MiB a device call "
                             "carries")
        if out.exists():
            old = Path(tmp) / "old"
            out.rename(old)
        stage.rename(out)
    for whl in sorted(out.glob("*.whl")):
        print(f"{whl.stat().st_size / 2**20:7.2f} MiB  {whl.name}")
    print(f"gpu-wheels: {out} ({size / 2**20:.1f} MiB); carry it to the GPU machine (device tool: carry=['{args.out}'])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
