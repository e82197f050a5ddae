# The two commands: `make serve` (install, build the default model repository, start Triton)
# and `make test` (the whole suite; .ci/run calls exactly this).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# the default model: the shapes demo detector (README "The demo model"), trained by `make train-demo`
DEFAULT_CFG := models/shapes/yolov4-tiny-shapes.cfg
DEFAULT_WEIGHTS := models/shapes/yolov4-tiny-shapes.weights
DEFAULT_NAMES := models/shapes/shapes.names
CFG ?= $(DEFAULT_CFG)
IS_DEFAULT := $(filter $(DEFAULT_CFG),$(CFG))
WEIGHTS ?= $(if $(IS_DEFAULT),$(DEFAULT_WEIGHTS))
NAMES ?= $(if $(IS_DEFAULT),$(DEFAULT_NAMES),models/darknet/coco.names)
# the served base name: derived from the cfg file name unless NAME is given (yolov4-tiny-shapes.cfg -> yolov4_tiny_shapes)
NAME ?=
SIZE ?= 416
TARGET ?= cpu
# the committed repository holds the default model; a user's model is built beside it
REPO ?= $(if $(IS_DEFAULT),model_repository,build/model_repository)
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=
# make demo / train-demo / evaluate
MODEL ?= $(if $(NAME),$(NAME),$(subst -,_,$(basename $(notdir $(CFG)))))
DEMO_SEED ?= 4267
DEMO_DIR ?= build/demo
DEMO_SCORE ?= 0.25
TRAIN_SEED ?= 0
EVAL_SEED ?= 1000
EVAL_COUNT ?= 500
EVAL_DIR ?= build/eval/seed$(EVAL_SEED)-n$(EVAL_COUNT)
# INT8 (cpu): CALIBRATION=DIR of images like the traffic, VALIDATION=COCO annotations for the accuracy gate.
# The demo calibrates on training-distribution scenes (the training seed) and is gated on its own validation
# seed, never on an evaluation seed (EVAL_SEED, and the tests' held-out ones)
VALIDATION_SEED ?= 3000
CALIBRATION_COUNT ?= 300
VALIDATION_COUNT ?= 200
DEMO_CALIBRATION := build/calibration/seed$(TRAIN_SEED)-n$(CALIBRATION_COUNT)
DEMO_VALIDATION := build/validation/seed$(VALIDATION_SEED)-n$(VALIDATION_COUNT)
CALIBRATION ?= $(if $(IS_DEFAULT),$(DEMO_CALIBRATION)/images)
VALIDATION ?= $(if $(IS_DEFAULT),$(DEMO_VALIDATION)/annotations.json)

.PHONY: install system-deps front-deps perf-tools demo-scenes build serve lint tensorrt-dryrun test clean demo train-demo evaluate

install: $(VENV)/.installed

$(VENV)/.installed: server/pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ./client -e './server[build,serve,openvino,int8,tune,test]'
	touch $@

# Debian packages the tests run for real: promtool/prometheus, nginx, docker-compose (v1: runs docker/compose.yaml),
# the Docker engine with its BuildKit CLI (docker.io: tests/docker start dockerd when none runs) and debootstrap
# (docker/debian-base.sh: the local base image where no registry serves one) and ffmpeg (a live camera stream over UDP
# on loopback, tests/integration/test_live_stream.py)
SYSTEM_PACKAGES := prometheus nginx docker-compose docker.io debootstrap ffmpeg
system-deps:
	@dpkg -s $(SYSTEM_PACKAGES) >/dev/null 2>&1 || \
	  ( (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null )

# nginx: the front `yolo-server serve` puts on the ports clients reach, capping request sizes (Triton has no cap)
front-deps:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || \
	  ( (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null )

# perf_analyzer (yolo_server.tuning, its test): the binary in the tritonclient 2.50.0 wheel (later ones dropped it;
# the perf-analyzer wheel needs glibc 2.38), with the libcudart it links and Debian's libb64, beside the venv so
# the venv keeps its newer tritonclient
PERF_TOOLS := $(VENV)/perf-tools
perf-tools: install
	@dpkg -s libb64-0d >/dev/null 2>&1 || \
	  ( (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libb64-0d >/dev/null )
	@test -x $(PERF_TOOLS)/bin/perf_analyzer && test -f $(PERF_TOOLS)/nvidia/cuda_runtime/lib/libcudart.so.12 || \
	  $(BIN)/python -m pip install -q --upgrade --no-deps --target $(PERF_TOOLS) tritonclient==2.50.0 \
	    nvidia-cuda-runtime-cu12==12.9.79

# the demo's calibration and validation scenes, generated once (seconds)
demo-scenes: install
	test -f $(DEMO_CALIBRATION)/annotations.json || \
	  $(BIN)/yolo-train scenes $(DEMO_CALIBRATION) --count $(CALIBRATION_COUNT) --seed $(TRAIN_SEED)
	test -f $(DEMO_VALIDATION)/annotations.json || \
	  $(BIN)/yolo-train scenes $(DEMO_VALIDATION) --count $(VALIDATION_COUNT) --seed $(VALIDATION_SEED)

build: install $(if $(IS_DEFAULT),demo-scenes)
	$(BIN)/yolo-server build --cfg $(CFG) $(if $(WEIGHTS),--weights $(WEIGHTS)) --names $(NAMES) \
	  --size $(SIZE) --target $(TARGET) $(if $(NAME),--name $(NAME)) --output $(REPO) \
	  $(if $(CALIBRATION),--calibration-images $(CALIBRATION)) $(if $(VALIDATION),--validation $(VALIDATION))

serve: build front-deps
	$(BIN)/yolo-server serve $(REPO) --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
	  --metrics-port $(METRICS_PORT)

# ruff (lint + format, ruff.toml) and mypy over the client and the whole server (mypy.ini: strict on the
# contract, the client and ops/, mypy's defaults on the rest of the server)
LINTED := server client bench loadtest docker tests
lint: install
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy -p yolo_client -p yolo_server

# the real Torch-TensorRT 2.9.0 in dry-run mode (tests/unit/test_tensorrt_dryrun.py): its own venv, cached outside
# the checkout (about 7 GB; created once per machine, 1-3 minutes)
tensorrt-dryrun:
	bash tests/tensorrt_dryrun/venv.sh >/dev/null

test: install system-deps perf-tools lint tensorrt-dryrun
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# retrain the demo detector from a seed (2 CPU cores: about 37 minutes), rewriting DEFAULT_WEIGHTS
train-demo: install
	$(BIN)/yolo-train train --cfg $(DEFAULT_CFG) --output $(DEFAULT_WEIGHTS) --seed $(TRAIN_SEED)

# a generated scene through the running server (`make serve` in another shell), drawn to $(DEMO_DIR)/demo.png
demo:
	$(BIN)/yolo-train scenes $(DEMO_DIR) --count 1 --seed $(DEMO_SEED)
	$(BIN)/yolo-client detect $(DEMO_DIR)/images/$(DEMO_SEED)_000000.jpg --url $(HOST):$(GRPC_PORT) --model $(MODEL) \
	  --score-threshold $(DEMO_SCORE) --draw $(DEMO_DIR)/demo.png

# COCO mAP of CFG/WEIGHTS on EVAL_COUNT held-out scenes (seed EVAL_SEED), in process
evaluate: install
	test -f $(EVAL_DIR)/annotations.json || $(BIN)/yolo-train scenes $(EVAL_DIR) --count $(EVAL_COUNT) --seed $(EVAL_SEED)
	$(BIN)/yolo-eval $(EVAL_DIR)/annotations.json --cfg $(CFG) $(if $(WEIGHTS),--weights $(WEIGHTS)) --names $(NAMES) \
	  --size $(SIZE)

clean:
	rm -rf build model_repository/*/1/*.pt model_repository/*/1/*.xml model_repository/*/1/*.bin
