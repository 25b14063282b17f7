# Shared helpers for the launch scripts; sourced, not run.
#
# DRY_RUN=1 prints every gcloud/ssh command instead of running it, which is
# how the scripts are tested and a good way to review a launch first.

run() {
    if [[ "${DRY_RUN:-0}" == 1 ]]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

die() {
    echo "error: $*" >&2
    exit 2
}

# Packs the working tree (without .git and run directories) into a
# tarball and prints its path; the hosts unpack it into ~/bnll_jax.
pack_tree() {
    local repo tarball
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    tarball=$(mktemp -t bnll_jax.XXXXXX.tgz)
    # Local and harmless, so it runs even under DRY_RUN.
    tar --exclude=.git --exclude=./runs --exclude=__pycache__ \
        -czf "$tarball" -C "$repo" .
    echo "$tarball"
}

# What each host runs: unpack, install with the accelerator's JAX build
# ($1: "tpu" or "cuda12"), then `bnll train` with the remaining arguments,
# each quoted to survive one remote shell.
host_command() {
    local extra=$1
    shift
    local quoted=""
    for word in "$@"; do
        quoted+=" $(printf '%q' "$word")"
    done
    echo "mkdir -p ~/bnll_jax && tar -xzf ~/bnll_jax.tgz -C ~/bnll_jax" \
        "&& cd ~/bnll_jax && pip install -q -r requirements.txt" \
        "'jax[${extra}]==0.10.2' && pip install -q --no-deps -e ." \
        "&& bnll train${quoted}"
}
