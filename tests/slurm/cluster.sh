#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and CI.
#
#   tests/slurm/cluster.sh start    install (if missing), configure, start; wait until idle
#   tests/slurm/cluster.sh stop     stop slurmd, slurmctld and munged cleanly
#   tests/slurm/cluster.sh status   print sinfo; exit 0 only when the node answers
#
# Needs root (it installs Debian packages and writes /etc/slurm). Every command is idempotent:
# `start` on a running cluster with an unchanged config only checks it is up.
# Slurm has no accounting here (no slurmdbd), so `sacct` does not work: Snakemake's slurm
# executor must use `--slurm-status-command squeue`, and MinJobAge keeps finished jobs visible
# to squeue long enough for Snakemake to see how they ended.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
MUNGE_RUN=/run/munge
MUNGE_KEY=/etc/munge/munge.key
PARTITION=debug
NODE=localhost
PACKAGES=(munge slurmctld slurmd slurm-client shellcheck)

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

require_root() {
  [[ $(id -u) -eq 0 ]] || die "must run as root (it installs packages and writes $CONF_DIR)"
}

install_packages() {
  local missing=()
  local pkg
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing ${missing[*]}"
  # Another process may hold the dpkg lock briefly; apt waits for it.
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=120 \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# ~90% of physical memory in MB, so jobs asking for mem_mb fit while the OS keeps some.
node_memory_mb() {
  awk '/^MemTotal:/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo
}

render_conf() {
  local cpus mem
  cpus=$(nproc)
  mem=$(node_memory_mb)
  cat <<EOF
# Written by tests/slurm/cluster.sh: a one-node cluster for tests. Do not edit by hand.
ClusterName=fleming-test
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Finished jobs stay in squeue for 10 minutes: without accounting that is the only place
# Snakemake can read their final state from.
MinJobAge=600
SlurmctldTimeout=10
SlurmdTimeout=10
InactiveLimit=0
KillWait=5
Waittime=0
MessageTimeout=10
# A job without --mem gets 1 GB per CPU instead of the whole node, so jobs can share it.
DefMemPerCPU=1024
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() {  # pid_alive <pidfile>
  [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

ensure_munge() {
  if [[ ! -s $MUNGE_KEY ]]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then
      mungekey -c -f -k "$MUNGE_KEY"
    else
      dd if=/dev/urandom bs=1 count=1024 of="$MUNGE_KEY" status=none
    fi
  fi
  chown munge:munge "$MUNGE_KEY"
  chmod 0400 "$MUNGE_KEY"
  mkdir -p "$MUNGE_RUN" /var/log/munge /var/lib/munge
  chown munge:munge "$MUNGE_RUN" /var/log/munge /var/lib/munge
  chmod 0755 "$MUNGE_RUN"
  if ! pid_alive "$MUNGE_RUN/munged.pid"; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
  fi
  munge -n | unmunge >/dev/null || die "munge does not round-trip a credential"
}

write_conf() {  # prints "changed" when the file was (re)written
  mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR" "$RUN_DIR"
  local new
  new=$(render_conf)
  if [[ ! -f $CONF ]] || [[ "$(cat "$CONF")" != "$new" ]]; then
    printf '%s\n' "$new" > "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    echo changed
  fi
}

stop_daemon() {  # stop_daemon <name> <pidfile>
  local name=$1 pidfile=$2 pid i
  pid_alive "$pidfile" || { rm -f "$pidfile"; return 0; }
  pid=$(cat "$pidfile")
  log "stopping $name ($pid)"
  kill -TERM "$pid"
  for i in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.2
  done
  log "$name did not stop on TERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

node_state() {
  sinfo -h -n "$NODE" -o '%t' 2>/dev/null | head -n1
}

wait_idle() {
  local i state=""
  for i in $(seq 1 60); do
    state=$(node_state || true)
    case $state in
      idle|mix|alloc) return 0 ;;
      down*|drain*|inval*)
        # A node that was down when slurmctld last ran comes back on request.
        scontrol update NodeName="$NODE" State=RESUME 2>/dev/null || true ;;
    esac
    sleep 0.5
  done
  die "node $NODE is '${state:-unreachable}' after 30 s; see $LOG_DIR/slurmctld.log and slurmd.log"
}

cmd_start() {
  require_root
  install_packages
  ensure_munge
  local changed
  changed=$(write_conf)
  if [[ -n $changed ]]; then
    stop_daemon slurmd "$RUN_DIR/slurmd.pid"
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
  fi
  if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -f "$CONF"
  fi
  if ! pid_alive "$RUN_DIR/slurmd.pid"; then
    log "starting slurmd"
    slurmd -f "$CONF" -N "$NODE"
  fi
  wait_idle
  log "up: partition $PARTITION, node $NODE ($(nproc) CPUs)"
}

cmd_stop() {
  require_root
  stop_daemon slurmd "$RUN_DIR/slurmd.pid"
  stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
  stop_daemon munged "$MUNGE_RUN/munged.pid"
}

cmd_status() {
  command -v sinfo >/dev/null || { log "slurm is not installed"; return 1; }
  pid_alive "$RUN_DIR/slurmctld.pid" || { log "slurmctld is not running"; return 1; }
  sinfo
  local state
  state=$(node_state || true)
  [[ $state == idle || $state == mix || $state == alloc ]]
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
