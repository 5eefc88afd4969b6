# fasvlm: the README's two commands, `make quickstart` and `make test`, work on a fresh machine.
# Each creates .venv if it is missing. CPU installs pin torch through constraints.txt (see README for GPU).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/pip
RUN_DIR ?= runs/quickstart
SYNTH_DIR ?= data/synthetic
TINY_CLIP ?= data/tiny_clip
IFAS_RUN_DIR ?= runs/ifas_tiny
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: venv quickstart tiny-clip ifas-tiny baselines-tiny test test-all test-slurm lint clean

$(BIN)/fasvlm: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q -c constraints.txt torch==2.13.0
	$(PIP) install -q -c constraints.txt -e '.[dev,video,onnx,demo]'
	touch $@

venv: $(BIN)/fasvlm

# Synthetic data is generated once; training then the test of the best checkpoint; prints the metrics table.
quickstart: venv
	test -f $(SYNTH_DIR)/.complete || $(BIN)/fasvlm synth --out $(SYNTH_DIR) --preset quickstart
	$(BIN)/fasvlm fit --config conf/quickstart.yaml --trainer.default_root_dir $(RUN_DIR)
	$(BIN)/fasvlm test --config conf/quickstart.yaml --trainer.default_root_dir $(RUN_DIR) --ckpt_path best
	@echo "TensorBoard logs: $(RUN_DIR)   (view with: $(BIN)/tensorboard --logdir $(RUN_DIR))"

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
	$(BIN)/fasvlm fit --config conf/ifas/tiny.yaml --model.init_args.vision $(TINY_CLIP) --trainer.default_root_dir $(IFAS_RUN_DIR)
	$(BIN)/fasvlm test --config conf/ifas/tiny.yaml --model.init_args.vision $(TINY_CLIP) --trainer.default_root_dir $(IFAS_RUN_DIR) --ckpt_path best
	$(BIN)/fasvlm predict --config conf/ifas/tiny.yaml --model.init_args.vision $(TINY_CLIP) --trainer.default_root_dir $(IFAS_RUN_DIR) --ckpt_path best
	@echo "I-FAS-tiny: $(IFAS_RUN_DIR)/test_metrics.json, $(IFAS_RUN_DIR)/predictions.jsonl"

# The field's baselines at tiny size on the synthetic data: fit + test of the best checkpoint for each (docs/methods.md)
BASELINES ?= flip_v flip_it flip_mcl vitaf ssdg safas cfpl
baselines-tiny: venv
	test -f $(SYNTH_DIR)/.complete || $(BIN)/fasvlm synth --out $(SYNTH_DIR) --preset quickstart
	for m in $(BASELINES); do \
	  $(BIN)/fasvlm fit --config conf/$$m/tiny.yaml && \
	  $(BIN)/fasvlm test --config conf/$$m/tiny.yaml --ckpt_path best || exit 1; \
	done

# Fast suite (CI): everything but the `slow` marker. pytest's exit code 5 (no tests collected) is an error here.
test: venv
	$(BIN)/python -m pytest -m "not slow and not gpu" -q

test-all: venv
	$(BIN)/python -m pytest -q

# A real SLURM cluster on loopback (root; installs slurm-wlm and munge with apt-get if missing): train+test and
# SIGUSR1 -> requeue -> resume through conf/slurm/cpu_gloo.sbatch. 2-3 minutes on 2 cores.
test-slurm: venv
	FASVLM_VENV=$(abspath $(VENV)) bash tests/slurm/run_slurm_test.sh

lint: venv
	$(BIN)/ruff check src data_modules callbacks tests

clean:
	rm -rf build dist *.egg-info runs
