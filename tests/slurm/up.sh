#!/usr/bin/env bash
# Bring up a one-node SLURM cluster on this Debian machine, as root, for the SLURM tests (and
# for trying profiles/slurm without a real cluster): munge, slurmctld and slurmd on localhost,
# two partitions (cpu, default; gpu) on the one node, and two fake GPUs (gres files that are
# symlinks to /dev/null, so jobs that ask for a GPU get CUDA_VISIBLE_DEVICES set but no device).
# No accounting database: job records go to a jobcomp text file, and the profile polls with
# squeue. Idempotent: does nothing if the cluster already answers. Tear down: tests/slurm/down.sh.
#
# Environment: SYNTHLORA_SLURM_STATE  state, logs and job records (default /var/lib/synthlora-slurm)
#              SYNTHLORA_SLURM_MEM_MB memory the node advertises (default 65536; not enforced)
set -euo pipefail

STATE=${SYNTHLORA_SLURM_STATE:-/var/lib/synthlora-slurm}
MEM_MB=${SYNTHLORA_SLURM_MEM_MB:-65536}
CONF=/etc/slurm/slurm.conf
MARK="# written by synthlora tests/slurm/up.sh"

[ "$(id -u)" = 0 ] || { echo "up.sh: run as root" >&2; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

if scontrol ping 2>/dev/null | grep -q "is UP"; then
    echo "up.sh: a SLURM controller already answers; nothing to do"
    exit 0
fi
if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF"; then
    echo "up.sh: $CONF exists and was not written by this script; refusing to replace it" >&2
    exit 1
fi
# A half-started cluster of ours (controller gone): stop what is left before starting afresh.
[ -e "$CONF" ] && bash "$(dirname "$0")/down.sh" >/dev/null

# ---- munge ------------------------------------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile /etc/munge/munge.key 2>/dev/null ||
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged --force
    for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi

# ---- configuration ----------------------------------------------------------------------------
cpus=$(nproc)
[ "$cpus" -ge 2 ] || cpus=2   # the tests ask for 2 cores; slurmd takes the configured values
rm -rf "$STATE"
mkdir -p "$STATE"/{ctld,spool,log,dev}
ln -sf /dev/null "$STATE/dev/nvidia0"
ln -sf /dev/null "$STATE/dev/nvidia1"
: > "$STATE/jobcomp.log"

cat > "$CONF" <<EOF
$MARK
# One node (localhost), two partitions, two fake GPUs. Delete with tests/slurm/down.sh.
ClusterName=synthlora
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# The node advertises what is configured here (fake GPUs, and memory the demo never uses).
SlurmdParameters=config_overrides
DefMemPerNode=1000
# Finished jobs stay visible to squeue for 5 minutes: profiles/slurm polls with squeue.
MinJobAge=300
KillWait=5
InactiveLimit=0
AccountingStorageType=accounting_storage/none
# SLURM's own record of every finished job, without an accounting database.
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.log
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$MEM_MB Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP
EOF

cat > /etc/slurm/gres.conf <<EOF
$MARK
AutoDetect=off
NodeName=localhost Name=gpu File=$STATE/dev/nvidia[0-1]
EOF

# ---- daemons ----------------------------------------------------------------------------------
# In the foreground (-D), started in the background: $! is the daemon itself, recorded for down.sh
# (slurmd writes its own pid file only once it has registered).
rm -f /run/slurmctld.pid /run/slurmd.pid
setsid slurmctld -D -i </dev/null >>"$STATE/log/slurmctld.out" 2>&1 &
echo $! > "$STATE/slurmctld.pid"
for _ in $(seq 100); do scontrol ping 2>/dev/null | grep -q "is UP" && break; sleep 0.1; done
if ! scontrol ping 2>/dev/null | grep -q "is UP"; then
    echo "up.sh: slurmctld did not start:" >&2
    tail -3 "$STATE/log/slurmctld.log" >&2
    exit 1
fi
setsid slurmd -D -N localhost </dev/null >>"$STATE/log/slurmd.out" 2>&1 &
echo $! > "$STATE/slurmd.pid"
for _ in $(seq 150); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -1)
    [ "$state" = idle ] && break
    sleep 0.2
done
if [ "${state:-}" != idle ]; then
    echo "up.sh: node did not become idle (state '${state:-none}'); logs in $STATE/log" >&2
    sinfo -R >&2 || true
    exit 1
fi
echo "up.sh: SLURM is up: partitions $(sinfo -h -o %P | tr '\n' ' ')- node localhost, $cpus CPUs, 2 fake GPUs; job records in $STATE/jobcomp.log"
