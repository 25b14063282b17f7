#!/usr/bin/env bash
# Train across several GPU hosts reachable over ssh (e.g. GCE A3 VMs).
#
#   launch/gpu_hosts.sh CONFIG [key=value ...]
#
# Environment: HOSTS, the hosts in process order ("vm-0 vm-1 ..."; the
# first is the coordinator); PORT (coordinator port, default 12355);
# ZONE and PROJECT to reach GCE VMs through `gcloud compute ssh` (without
# ZONE plain ssh is used); DRY_RUN=1 to print the commands.
#
# Each host gets distributed.coordinator_address, num_processes and its
# own process_id, so jax.distributed.initialize() joins them into one
# mesh; every host runs all of its local GPUs. Put checkpoint.dir on
# storage all hosts share (gs:// or a network file system).
set -euo pipefail
source "$(dirname "$0")/common.sh"

[[ $# -ge 1 ]] || die "usage: $0 CONFIG [key=value ...]"
[[ -f "$1" ]] || die "config file $1 not found"
: "${HOSTS:?set HOSTS to the space-separated host names, coordinator first}"
read -r -a hosts <<<"$HOSTS"
PORT=${PORT:-12355}
coordinator="${hosts[0]}:${PORT}"

project=()
[[ -n "${PROJECT:-}" ]] && project=(--project="$PROJECT")

# Copies the tarball to a host, then runs a command there.
on_host() {
    local host=$1 tarball=$2 command=$3
    if [[ -n "${ZONE:-}" ]]; then
        run gcloud compute scp "${project[@]}" --zone="$ZONE" "$tarball" \
            "$host:~/bnll_jax.tgz"
        run gcloud compute ssh "$host" "${project[@]}" --zone="$ZONE" \
            --command="$command"
    else
        run scp "$tarball" "$host:~/bnll_jax.tgz"
        run ssh "$host" "$command"
    fi
}

tarball=$(pack_tree)
pids=()
for i in "${!hosts[@]}"; do
    command=$(host_command cuda12 "$@" \
        distributed.coordinator_address="$coordinator" \
        distributed.num_processes="${#hosts[@]}" \
        distributed.process_id="$i")
    # All processes must start together: the coordinator waits for them.
    on_host "${hosts[$i]}" "$tarball" "$command" &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do
    wait "$pid" || status=$?
done
exit "$status"
