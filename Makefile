# The two commands: `make serve` (install, build the default model repository, start Triton)
# and `make test` (the whole suite; .ci/run calls exactly this).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEFAULT_CFG := models/darknet/yolov4-tiny.cfg
CFG ?= $(DEFAULT_CFG)
WEIGHTS ?=
NAMES ?= models/darknet/coco.names
SIZE ?= 416
TARGET ?= cpu
# the committed repository holds the default model; a user's model is built beside it
REPO ?= $(if $(filter $(DEFAULT_CFG),$(CFG)),model_repository,build/model_repository)
HOST ?= 127.0.0.1
HTTP_PORT ?= 8000
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
PYTEST_ARGS ?=

.PHONY: install system-deps build serve test clean

install: $(VENV)/.installed

$(VENV)/.installed: server/pyproject.toml client/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# the CPU build of torch (an unpinned torch would pull a multi-GB CUDA build)
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ./client -e './server[serve,test]'
	touch $@

# Debian packages the tests run for real: promtool/prometheus, nginx, docker-compose (v1: validates docker/compose.yaml)
system-deps:
	@command -v promtool >/dev/null && command -v nginx >/dev/null && command -v docker-compose >/dev/null || \
	  ( (apt-get update -qq || true) && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus nginx docker-compose >/dev/null )

build: install
	$(BIN)/yolo-server build --cfg $(CFG) $(if $(WEIGHTS),--weights $(WEIGHTS)) --names $(NAMES) \
	  --size $(SIZE) --target $(TARGET) --output $(REPO)

serve: build
	$(BIN)/yolo-server serve $(REPO) --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) \
	  --metrics-port $(METRICS_PORT)

test: install system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf build model_repository/*/1/*.pt
