#!/usr/bin/env bash
# Train on a Cloud TPU VM or pod slice.
#
#   launch/tpu_pod.sh CONFIG [key=value ...]
#
# Environment: TPU_NAME, ZONE, ACCELERATOR (e.g. v5litepod-64), PROJECT
# (optional), RUNTIME (TPU software version, default tpu-ubuntu2204-base),
# CREATE=1 to create the slice first (SPOT=1 for a spot slice), DRY_RUN=1 to
# print the commands. Every worker of the slice runs the same command;
# jax.distributed.initialize() discovers the slice's hosts by itself, and
# each host feeds its own share of the global batch.
#
# Use a gs:// checkpoint directory (checkpoint.dir=gs://bucket/run) so that
# all hosts write one checkpoint and a preempted slice resumes from it:
# rerunning the same command continues from the latest complete step.
set -euo pipefail
source "$(dirname "$0")/common.sh"

[[ $# -ge 1 ]] || die "usage: $0 CONFIG [key=value ...]"
[[ -f "$1" ]] || die "config file $1 not found"
: "${TPU_NAME:?set TPU_NAME to the TPU VM or slice name}"
: "${ZONE:?set ZONE, e.g. us-central2-b}"
RUNTIME=${RUNTIME:-tpu-ubuntu2204-base}
project=()
[[ -n "${PROJECT:-}" ]] && project=(--project="$PROJECT")

if [[ "${CREATE:-0}" == 1 ]]; then
    : "${ACCELERATOR:?set ACCELERATOR, e.g. v5litepod-64, to create a slice}"
    spot=()
    [[ "${SPOT:-0}" == 1 ]] && spot=(--spot)
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${project[@]}" \
        --zone="$ZONE" --accelerator-type="$ACCELERATOR" \
        --version="$RUNTIME" "${spot[@]}"
fi

tarball=$(pack_tree)
run gcloud compute tpus tpu-vm scp "${project[@]}" --zone="$ZONE" \
    --worker=all "$tarball" "$TPU_NAME:~/bnll_jax.tgz"
run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${project[@]}" \
    --zone="$ZONE" --worker=all --command="$(host_command tpu "$@")"
