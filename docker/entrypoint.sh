#!/bin/sh
# The one entrypoint of every image (docker/Dockerfile.builder, .server, .cpu), used by docker/compose.yaml and
# docker/k8s/. It only turns environment variables into `yolo-server` commands (server/yolo_server/cli.py):
#
#   entrypoint.sh build    yolo-server build ... --output $REPOSITORY, skipped when $REPOSITORY/.build-stamp
#                          matches the inputs (arguments, cfg/weights/names bytes, GPU model): built once per volume;
#                          `--preflight` first, so a container without a GPU or torch_tensorrt says what is missing
#                          and leaves the volume as it was
#   entrypoint.sh serve    yolo-server serve $REPOSITORY on 0.0.0.0, ports 8000 (HTTP) 8001 (gRPC) 8002 (metrics):
#                          nginx listens there and caps each request, Triton listens on the container's loopback;
#                          the launcher exits 3 when a Python-backend stub or nginx dies or hangs: let the
#                          orchestrator restart it
#   entrypoint.sh health   yolo-server probe: exit 0 when the server is ready and a canary inference through every
#                          image model of $REPOSITORY answers within 12 s (the container's one health check)
#   anything else          run as a command (e.g. `sh`)
#
# Environment (unset or empty: the default):
#   MODELS_DIR  folder of the user's files, compose mounts ../models here     default /models
#   CFG         darknet .cfg, relative to MODELS_DIR or absolute               default: the shapes demo model (as
#                                                                               `make serve`), its weights and names
#   WEIGHTS     darknet .weights (relative to MODELS_DIR or absolute)          default with CFG: calibrated RANDOM
#   NAMES       class names file (relative to MODELS_DIR or absolute)          default with CFG: class ids
#   SIZE        network input, N or WxH                                        default: the cfg's
#   TARGET      tensorrt | cpu                                                 default: cpu
#   PRECISION   fp16 | fp32 (tensorrt), auto | fp32 | bf16 | int8 (cpu)        default: yolo-server's
#   CALIBRATION_IMAGES  cpu: a folder of images (in MODELS_DIR) to build INT8 from  default: no INT8 (the demo
#                                                                              model: its scenes, as `make build`)
#   VALIDATION  COCO annotations (in MODELS_DIR) for the INT8 accuracy gate    default: agreement with fp32
#   INT8_GATE_FAILURE  fallback | stop, when INT8 fails its gate              default: fallback
#   MAX_BATCH_SIZE  largest dynamic batch (the TensorRT profile's max)         default: yolo-server's per target
#   OPT_BATCH_SIZE  the TensorRT profile's optimum                             default: half of MAX_BATCH_SIZE
#   PREFERRED_BATCH_SIZES  the detector's preferred batches, e.g. 16,32        default: yolo-server's per target
#   MAX_QUEUE_DELAY_US, MAX_QUEUE_IMAGES, QUEUE_TIMEOUT_US  each model's dynamic-batching queue
#                                                                              default: yolo-server's per target
#   PREPROCESS_INSTANCES, DETECTOR_INSTANCES, POSTPROCESS_INSTANCES  model instances (GPU ones per GPU)
#                                                                              default: sized by serve
#   FUSED_INSTANCES  cpu: instances of the fused model, each taking a dynamic batch on one thread
#                                                                              default: sized by serve
#   DETECTOR_THREADS  cpu: OpenVINO threads of a detector instance, the fused model's for a lone image
#               (0: one per core it sees)                                      default: sized by serve
#               (sized by serve: to the CPUs the container may use, the smaller of its affinity and its cgroup
#               CPU quota, when the server starts: docs/cpu-serving.md "Sized to the machine")
#   FUSED       cpu: 1 the fused model, 0 the preprocess -> detector -> postprocess ensemble   default: fused
#   MODEL_NAME  the served base name                                           default: from the cfg file name
#   SCORE_THRESHOLD, NMS_THRESHOLD, MAX_DETECTIONS  the served thresholds and detection cap
#                                                                              default: yolo-server's (darknet's)
#   CLASS_AGNOSTIC  1: NMS across classes                                      default 0: per class
#   MAX_PIXELS, MAX_BYTES  the largest image accepted, in pixels and in encoded bytes   default: yolo-server's
#   REPOSITORY  the model repository folder (a volume shared by builder and server)   default /repository
#   EXIT_TIMEOUT  seconds Triton drains in-flight requests after SIGTERM       default 30 (< stop grace period)
#   READY_TIMEOUT  seconds the models may take to load                        default: yolo-server's (600)
#   SHM_BYTES   Python-backend shared memory per model instance (/dev/shm)     default: yolo-server's (32 MiB)
#   CHECK_INTERVAL, CANARY_INTERVAL, CANARY_TIMEOUT  supervision: seconds between stub checks (0: none), between
#               canary inferences, and a canary's deadline                     default: yolo-server's
#   LOG_VERBOSE  Triton's log verbosity                                        default 0
#   TUNING      settings `yolo-server tune` chose (serve --tuning; relative to MODELS_DIR or absolute)
#                                                                              default: $REPOSITORY/tuning.json
#                                                                              where measured on this machine
#   MAX_REQUEST_BYTES  the front's cap on one request (serve --max-request-bytes)   default: the largest request
#                                                                              the repository's models accept
#   ADMIN_KEY_FILE  file with the key the `admin-key` header (gRPC: triton-grpc-protocol-admin-key) must carry
#               for Triton's repository, shared-memory, trace and logging APIs (serve --admin-key-file; set:
#               the file must exist)                                           default: those APIs off
#   TLS_CERT, TLS_KEY  PEM certificate (chain) and key: gRPC over TLS; HTTP then binds 127.0.0.1 only (health
#               checks still reach it)                                         default: no TLS
#   TLS_CLIENT_CA  PEM CA that client certificates must chain to: mutual TLS (needs TLS_CERT, TLS_KEY)
#                                                                              default: no client certificates
#   YOLO_DRY_RUN=1  print the yolo-server argv, one argument a line, instead of running it (tests/unit/test_deploy_*)
set -eu

APP=/opt/yolo
# the Makefile's default model (tests/unit/test_deploy_entrypoint.py keeps the two equal)
DEFAULT_CFG=$APP/models/shapes/yolov4-tiny-shapes.cfg
DEFAULT_WEIGHTS=$APP/models/shapes/yolov4-tiny-shapes.weights
DEFAULT_NAMES=$APP/models/shapes/shapes.names
# the Makefile's INT8 calibration and validation scenes of the demo model (seed, count; the same test keeps them)
DEMO_CALIBRATION="0 300"
DEMO_VALIDATION="3000 200"
DEMO_SCENES=${TMPDIR:-/tmp}/yolo-demo-scenes
HTTP_PORT=8000
GRPC_PORT=8001
METRICS_PORT=8002

MODELS_DIR=${MODELS_DIR:-/models}
REPOSITORY=${REPOSITORY:-/repository}

in_models() {  # a file name relative to MODELS_DIR, or an absolute path
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$MODELS_DIR/$1" ;;
    esac
}

run() {  # run a yolo-server command, or print it (YOLO_DRY_RUN=1)
    if [ "${YOLO_DRY_RUN:-}" = 1 ]; then
        printf '%s\n' "$@"
    else
        exec "$@"
    fi
}

boolean() {  # NAME VALUE: prints 1 or 0 (nothing when VALUE is empty); another value stops with the reason
    case "$2" in
        1 | true | yes) echo 1 ;;
        0 | false | no) echo 0 ;;
        "") ;;
        *) echo "entrypoint: $1 must be 1 or 0, not '$2'" >&2; exit 2 ;;
    esac
}

write_scenes() {  # NAME SEED COUNT: the demo's generated scenes under $DEMO_SCENES/NAME, written once
    [ -f "$DEMO_SCENES/$1/annotations.json" ] || yolo-train scenes "$DEMO_SCENES/$1" --seed "$2" --count "$3"
}

build() {
    fused=$(boolean FUSED "${FUSED:-}")
    class_agnostic=$(boolean CLASS_AGNOSTIC "${CLASS_AGNOSTIC:-}")
    names=${NAMES:+$(in_models "$NAMES")}
    weights=${WEIGHTS:+$(in_models "$WEIGHTS")}
    if [ -n "${CFG:-}" ]; then
        cfg=$(in_models "$CFG")
    else
        cfg=$DEFAULT_CFG
        names=${names:-$DEFAULT_NAMES}
        weights=${weights:-$DEFAULT_WEIGHTS}
        case "${TARGET:-cpu}:${PRECISION:-auto}:${CALIBRATION_IMAGES:-}" in
            cpu:auto: | cpu:int8:) demo_scenes=1 ;;  # INT8 as `make build` builds it
        esac
    fi
    set -- yolo-server build --cfg "$cfg" --target "${TARGET:-cpu}" --output "$REPOSITORY"
    [ -z "$weights" ] || set -- "$@" --weights "$weights"
    [ -z "$names" ] || set -- "$@" --names "$names"
    [ -z "${SIZE:-}" ] || set -- "$@" --size "$SIZE"
    [ -z "${PRECISION:-}" ] || set -- "$@" --precision "$PRECISION"
    [ -z "${CALIBRATION_IMAGES:-}" ] || set -- "$@" --calibration-images "$(in_models "$CALIBRATION_IMAGES")"
    [ -z "${VALIDATION:-}" ] || set -- "$@" --validation "$(in_models "$VALIDATION")"
    [ -z "${INT8_GATE_FAILURE:-}" ] || set -- "$@" --int8-gate-failure "$INT8_GATE_FAILURE"
    if [ -n "${demo_scenes:-}" ]; then  # the user's VALIDATION, if given, gates the demo's INT8 instead
        set -- "$@" --calibration-images "$DEMO_SCENES/calibration/images"
        [ -n "${VALIDATION:-}" ] || set -- "$@" --validation "$DEMO_SCENES/validation/annotations.json"
    fi
    [ -z "${MAX_BATCH_SIZE:-}" ] || set -- "$@" --max-batch-size "$MAX_BATCH_SIZE"
    [ -z "${OPT_BATCH_SIZE:-}" ] || set -- "$@" --opt-batch-size "$OPT_BATCH_SIZE"
    [ -z "${PREFERRED_BATCH_SIZES:-}" ] || set -- "$@" --preferred-batch-sizes "$PREFERRED_BATCH_SIZES"
    [ -z "${PREPROCESS_INSTANCES:-}" ] || set -- "$@" --instances "preprocess=$PREPROCESS_INSTANCES"
    [ -z "${DETECTOR_INSTANCES:-}" ] || set -- "$@" --instances "detector=$DETECTOR_INSTANCES"
    [ -z "${POSTPROCESS_INSTANCES:-}" ] || set -- "$@" --instances "postprocess=$POSTPROCESS_INSTANCES"
    [ -z "${FUSED_INSTANCES:-}" ] || set -- "$@" --instances "fused=$FUSED_INSTANCES"
    [ -z "${DETECTOR_THREADS:-}" ] || set -- "$@" --detector-threads "$DETECTOR_THREADS"
    [ -z "$fused" ] || set -- "$@" "$([ "$fused" = 1 ] && echo --fused || echo --no-fused)"
    [ -z "${MAX_QUEUE_DELAY_US:-}" ] || set -- "$@" --max-queue-delay-us "$MAX_QUEUE_DELAY_US"
    [ -z "${MAX_QUEUE_IMAGES:-}" ] || set -- "$@" --max-queue-images "$MAX_QUEUE_IMAGES"
    [ -z "${QUEUE_TIMEOUT_US:-}" ] || set -- "$@" --queue-timeout-us "$QUEUE_TIMEOUT_US"
    [ -z "${MODEL_NAME:-}" ] || set -- "$@" --name "$MODEL_NAME"
    [ -z "${SCORE_THRESHOLD:-}" ] || set -- "$@" --score-threshold "$SCORE_THRESHOLD"
    [ -z "${NMS_THRESHOLD:-}" ] || set -- "$@" --nms-threshold "$NMS_THRESHOLD"
    [ -z "${MAX_DETECTIONS:-}" ] || set -- "$@" --max-detections "$MAX_DETECTIONS"
    [ "$class_agnostic" != 1 ] || set -- "$@" --class-agnostic
    [ -z "${MAX_PIXELS:-}" ] || set -- "$@" --max-pixels "$MAX_PIXELS"
    [ -z "${MAX_BYTES:-}" ] || set -- "$@" --max-bytes "$MAX_BYTES"
    if [ "${YOLO_DRY_RUN:-}" = 1 ]; then
        run "$@"
        return
    fi
    # TensorRT engines are specific to the GPU model: it is part of the stamp
    stamp=$({ printf '%s\n' "$@"; cat "$cfg" ${weights:+"$weights"} ${names:+"$names"};
              nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || true; } | sha256sum | cut -d' ' -f1)
    if [ -f "$REPOSITORY/.build-stamp" ] && [ "$(cat "$REPOSITORY/.build-stamp")" = "$stamp" ]; then
        echo "entrypoint: $REPOSITORY is up to date for these inputs, not rebuilding"
        return
    fi
    if [ -n "${demo_scenes:-}" ]; then
        # shellcheck disable=SC2086  # "SEED COUNT" splits into two arguments on purpose
        write_scenes calibration $DEMO_CALIBRATION
        # shellcheck disable=SC2086
        [ -n "${VALIDATION:-}" ] || write_scenes validation $DEMO_VALIDATION
    fi
    "$@" --preflight  # the inputs, and for tensorrt the GPU and torch_tensorrt, before the volume is touched
    mkdir -p "$REPOSITORY"
    find "$REPOSITORY" -mindepth 1 -delete  # no stale model of an earlier cfg may be served beside the new one
    "$@"
    printf '%s\n' "$stamp" > "$REPOSITORY/.build-stamp"
}

serve() {  # the options go before the caller's arguments, which come last and so win
    [ -z "${MAX_REQUEST_BYTES:-}" ] || set -- --max-request-bytes "$MAX_REQUEST_BYTES" "$@"
    [ -z "${TUNING:-}" ] || set -- --tuning "$(in_models "$TUNING")" "$@"
    [ -z "${READY_TIMEOUT:-}" ] || set -- --ready-timeout "$READY_TIMEOUT" "$@"
    [ -z "${SHM_BYTES:-}" ] || set -- --shm-bytes "$SHM_BYTES" "$@"
    [ -z "${CHECK_INTERVAL:-}" ] || set -- --check-interval "$CHECK_INTERVAL" "$@"
    [ -z "${CANARY_INTERVAL:-}" ] || set -- --canary-interval "$CANARY_INTERVAL" "$@"
    [ -z "${CANARY_TIMEOUT:-}" ] || set -- --canary-timeout "$CANARY_TIMEOUT" "$@"
    [ -z "${LOG_VERBOSE:-}" ] || set -- --log-verbose "$LOG_VERBOSE" "$@"
    [ -z "${TLS_CLIENT_CA:-}" ] || set -- --tls-client-ca "$TLS_CLIENT_CA" "$@"
    [ -z "${TLS_KEY:-}" ] || set -- --tls-key "$TLS_KEY" "$@"
    [ -z "${TLS_CERT:-}" ] || set -- --tls-cert "$TLS_CERT" "$@"
    [ -z "${ADMIN_KEY_FILE:-}" ] || set -- --admin-key-file "$ADMIN_KEY_FILE" "$@"
    run yolo-server serve "$REPOSITORY" --host 0.0.0.0 --http-port "$HTTP_PORT" --grpc-port "$GRPC_PORT" \
        --metrics-port "$METRICS_PORT" --exit-timeout "${EXIT_TIMEOUT:-30}" "$@"
}

health() {  # HTTP on loopback: reachable with TLS on (it binds 127.0.0.1 then), and without any network policy
    run yolo-server probe --url "127.0.0.1:$HTTP_PORT" --repository "$REPOSITORY" --timeout 12
}

command=${1:-serve}
[ $# -eq 0 ] || shift
case "$command" in
    build) build "$@" ;;
    serve) serve "$@" ;;
    health) health ;;
    *) exec "$command" "$@" ;;
esac
