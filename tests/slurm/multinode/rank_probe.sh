#!/usr/bin/env bash
# FASVLM_BIN for the multi-node SLURM test (tests/slurm/multinode/run_multinode_test.sh): records where each task of a
# job step runs, then replaces itself with the real `fasvlm` (exec: same pid, same signals, same exit code).
#
# One line per task in $FASVLM_PROBE_DIR/probe-<job>-<restart>-<step>-<procid>.txt:
#   job restart step procid nodeid node pid=<pid, kept by exec> netns=<inode of /proc/self/ns/net> addrs=<IPv4 addresses of the namespace>
# The test compares the netns inodes with those of the two node namespaces it created.
set -euo pipefail
: "${FASVLM_PROBE_DIR:?set FASVLM_PROBE_DIR}" "${FASVLM_REAL_BIN:?set FASVLM_REAL_BIN (the real fasvlm executable)}"
netns=$(stat -L -c %i /proc/self/ns/net)
addrs=$(ip -o -4 addr show scope global | awk '{print $4}' | paste -sd, -)
name="probe-${SLURM_JOB_ID}-${SLURM_RESTART_COUNT:-0}-${SLURM_STEP_ID:-x}-${SLURM_PROCID}.txt"
printf '%s %s %s %s %s %s pid=%s netns=%s addrs=%s cmd=%s\n' "$SLURM_JOB_ID" "${SLURM_RESTART_COUNT:-0}" \
    "${SLURM_STEP_ID:-x}" "$SLURM_PROCID" "$SLURM_NODEID" "$SLURMD_NODENAME" "$$" "$netns" "${addrs:-none}" "${1:-}" \
    >"$FASVLM_PROBE_DIR/$name"
exec "$FASVLM_REAL_BIN" "$@"
