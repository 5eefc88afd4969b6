# fasvlm: the README's two commands, `make quickstart` and `make test`, work on a fresh machine.
# Each creates .venv if it is missing. CPU installs pin torch through constraints.txt (see README for GPU).
# The faces extra (dlib-bin wheel + face-recognition-models, ~100 MB of CC0 model files) gives prepare its dlib
# detector and five-point alignment, and lets the tests check them on a real photograph.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip
RUN_DIR ?= runs/instructflip-quickstart/latest
SYNTH_DIR ?= data/synthetic
TINY_CLIP ?= data/tiny_clip
IFAS_RUN_DIR ?= runs/ifas-tiny/latest
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv quickstart quickstart-hf tiny-clip ifas-tiny baselines-tiny test test-all test-slurm test-slurm-multinode gpu-wheels gpu-check lint clean

$(BIN)/fasvlm: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,video,onnx,demo,faces]'
	touch $@

venv: $(BIN)/fasvlm

# Synthetic data is generated once; training then the test of the best checkpoint; prints the metrics table.
# Each fit is a new run directory runs/instructflip-quickstart/<timestamp>; `test` uses its `latest` link.
quickstart: venv
	test -f $(SYNTH_DIR)/.complete || $(BIN)/fasvlm synth --out $(SYNTH_DIR) --preset quickstart
	$(BIN)/fasvlm fit --config conf/quickstart.yaml
	$(BIN)/fasvlm test --config conf/quickstart.yaml --ckpt_path best
	@echo "TensorBoard logs: $(RUN_DIR)   (view with: $(BIN)/tensorboard --logdir $(RUN_DIR))"

# The quickstart from Hugging Face `datasets` folders: each synthetic domain prepared once (face crops, manifest and
# <out>/manifest.hf with its dataset card), then fit + test with conf/data/quickstart_hf.yaml (run directory
# runs/instructflip-quickstart_hf/latest). conf/data/quickstart_manifest.yaml reads the same crops from the manifests.
QUICKSTART_DOMAINS := celeba_spoof synth_lowlight synth_phonecam
quickstart-hf: venv
	test -f $(SYNTH_DIR)/.complete || $(BIN)/fasvlm synth --out $(SYNTH_DIR) --preset quickstart
	for d in $(QUICKSTART_DOMAINS); do \
	  test -f data/prepared/synthetic/$$d/manifest.hf/fasvlm.json || \
	  $(BIN)/fasvlm prepare --dataset celeba_spoof --root $(SYNTH_DIR)/$$d --out data/prepared/synthetic/$$d --hf \
	    --no-progress || exit 1; \
	done
	$(BIN)/fasvlm fit --config conf/quickstart.yaml --config conf/data/quickstart_hf.yaml
	$(BIN)/fasvlm test --config conf/quickstart.yaml --config conf/data/quickstart_hf.yaml --ckpt_path best

# The tiny pretrained CLIP that conf/ifas/tiny.yaml loads and keeps frozen: synthetic image-caption pairs of its own
# domain (data/pretrain, the data paths of conf/clip/tiny_pretrain.yaml), contrastive pretraining, save_pretrained to
# $(TINY_CLIP). Built once (~2 minutes on 2 cores).
tiny-clip: venv
	test -f $(TINY_CLIP)/config.json || { \
	  { test -f data/pretrain/.complete || $(BIN)/fasvlm synth --out data/pretrain --preset pretrain; } && \
	  $(BIN)/fasvlm fit --config conf/clip/tiny_pretrain.yaml --model.init_args.export_dir $(TINY_CLIP); }

# I-FAS-tiny end to end: fit, test of the best checkpoint (metrics table), judgments and explanations (predict).
ifas-tiny: tiny-clip
	test -f $(SYNTH_DIR)/.complete || $(BIN)/fasvlm synth --out $(SYNTH_DIR) --preset quickstart
	$(BIN)/fasvlm fit --config conf/ifas/tiny.yaml --model.init_args.vision $(TINY_CLIP)
	$(BIN)/fasvlm test --config conf/ifas/tiny.yaml --model.init_args.vision $(TINY_CLIP) --ckpt_path best
	$(BIN)/fasvlm predict --config conf/ifas/tiny.yaml --model.init_args.vision $(TINY_CLIP) --ckpt_path best
	@echo "I-FAS-tiny: $(IFAS_RUN_DIR)/test_metrics.json, $(IFAS_RUN_DIR)/predictions.jsonl"

# The field's baselines at tiny size on the synthetic data: fit + test of the best checkpoint for each (docs/methods.md)
BASELINES ?= flip_v flip_it flip_mcl vitaf ssdg safas cfpl
baselines-tiny: venv
	test -f $(SYNTH_DIR)/.complete || $(BIN)/fasvlm synth --out $(SYNTH_DIR) --preset quickstart
	for m in $(BASELINES); do \
	  $(BIN)/fasvlm fit --config conf/$$m/tiny.yaml && \
	  $(BIN)/fasvlm test --config conf/$$m/tiny.yaml --ckpt_path best || exit 1; \
	done

# Fast suite (CI): everything but the `slow` marker; the `gpu` tests are collected and skip themselves without CUDA.
# pytest's exit code 5 (no tests collected) is an error here.
test: venv
	$(BIN)/python -m pytest -m "not slow" -q

test-all: venv
	$(BIN)/python -m pytest -q

# A real SLURM cluster on loopback (root; installs slurm-wlm and munge with apt-get if missing): train+test and
# SIGUSR1 -> requeue -> resume, scancel (SIGTERM) -> checkpoint -> resubmission, two concurrent jobs, through
# conf/slurm/cpu_gloo.sbatch.
test-slurm: venv
	FASVLM_VENV=$(abspath $(VENV)) bash tests/slurm/run_slurm_test.sh

# A real two-node SLURM cluster in network namespaces (root; slurmctld and the bridge in one namespace, one slurmd in
# each of two more, on 10.213.0.0/24 with no route out): conf/slurm/multi_node.sbatch with --nodes=2
# --ntasks-per-node=1 trains+tests, SIGUSR1 -> requeue -> resume, a node killed mid-run -> fail -> resubmit -> resume.
# About 3.5 minutes on 2 cores (8-10 when the cores are shared with other work); .ci/run runs it after make test.
test-slurm-multinode: venv
	FASVLM_VENV=$(abspath $(VENV)) bash tests/slurm/multinode/run_multinode_test.sh

# GPU acceptance kit (tests/gpu/gpu_check.py). Here, with PyPI access: `make gpu-wheels` writes $(GPU_WHEELS), the
# wheels a bare GPU machine lacks (jsonargparse, deepspeed, pydantic ...; Python 3.12; git-ignored). On the GPU machine,
# with that folder carried: `make gpu-check` installs them and the project (--no-deps) into a target directory for the
# machine's python3, runs `fasvlm bench --preset real` of I-FAS and InstructFLIP, then `pytest -m gpu tests/gpu`;
# results in $(GPU_OUT) (gpu_check.json, gpu_bench.json, gpu_tests.xml, gpu_check.log). `GPU_CHECK_DRY=1 make
# gpu-check` runs the same script on CPU at tiny size (this venv), skipping and listing what needs CUDA.
GPU_WHEELS ?= .whl-gpu
GPU_OUT ?= $(if $(OUT),$(OUT),runs/gpu_check)
ifeq ($(GPU_CHECK_DRY),1)
GPU_PYTHON := $(BIN)/python
GPU_DEPS := venv
else
GPU_PYTHON := python3
GPU_DEPS :=
endif

gpu-wheels: venv
	$(BIN)/python tests/gpu/gpu_wheels.py --out $(GPU_WHEELS)

gpu-check: $(GPU_DEPS)
	$(GPU_PYTHON) tests/gpu/gpu_check.py --wheels $(GPU_WHEELS) --out $(GPU_OUT)

lint: venv
	$(BIN)/ruff check src data_modules callbacks tests

clean:
	rm -rf build dist *.egg-info runs
