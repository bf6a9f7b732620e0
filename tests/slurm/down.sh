#!/usr/bin/env bash
# Tear down the one-node cluster that tests/slurm/up.sh brought up: cancel its jobs, stop slurmd,
# slurmctld and munged by the PIDs in their pid files, and remove the configuration it wrote
# (the packages stay installed). Safe to run twice.
set -uo pipefail

STATE=${SYNTHLORA_SLURM_STATE:-/var/lib/synthlora-slurm}
MARK="# written by synthlora tests/slurm/up.sh"

[ "$(id -u)" = 0 ] || { echo "down.sh: run as root" >&2; exit 1; }

if ! grep -qsF "$MARK" /etc/slurm/slurm.conf; then
    echo "down.sh: /etc/slurm/slurm.conf was not written by up.sh; leaving SLURM alone"
    exit 0
fi

scancel --user=root --full 2>/dev/null || true

stop() {  # stop <pidfile>: TERM, wait up to 10 s, then KILL; remove the pid file
    local pidfile=$1 pid
    [ -s "$pidfile" ] || { rm -f "$pidfile"; return; }
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}
stop "$STATE/slurmd.pid"
stop "$STATE/slurmctld.pid"
rm -f /run/slurmd.pid /run/slurmctld.pid
stop /run/munge/munged.pid

rm -f /etc/slurm/slurm.conf /etc/slurm/gres.conf
echo "down.sh: SLURM stopped; state and logs kept in $STATE until the next up.sh"
