#!/usr/bin/env bash
# A two-node SLURM cluster on this machine, for the tests and CI.
#
#   tests/slurm/cluster.sh start    install (if missing), configure, start; wait until idle
#   tests/slurm/cluster.sh stop     stop both slurmd, slurmctld and munged cleanly
#   tests/slurm/cluster.sh status   print sinfo; exit 0 only when both nodes answer
#
# Two slurmd daemons in Slurm's multiple-slurmd mode (Debian's build has it): one per node name,
# each with its own port, spool folder, pid file and log, register as fleming-n1 and
# fleming-n2. Both names resolve to this machine through /etc/hosts, so a two-node job's ranks
# meet at the first node's name as they would on a real cluster. (Separate network namespaces
# per node would need `ip netns`, which sandboxed CI machines such as gVisor do not offer.)
#
# Needs root (it installs Debian packages and writes /etc/slurm). Every command is idempotent:
# `start` on a running cluster with an unchanged config only checks it is up.
# Slurm has no accounting here (no slurmdbd), so `sacct` does not work: Snakemake's slurm
# executor must use `--slurm-status-command squeue`, and MinJobAge keeps finished jobs visible
# to squeue long enough for Snakemake to see how they ended.
# slurmctld keeps its state in a folder of its own: state another Slurm setup left in Debian's
# default folder under another ClusterName would stop it from starting ("CLUSTER NAME MISMATCH").
set -euo pipefail

CONF_DIR=/etc/slurm
CONF="$CONF_DIR/slurm.conf"
STATE_DIR=/var/spool/fleming-slurm/ctld
SPOOL_DIR=/var/spool/fleming-slurm/slurmd
LOG_DIR=/var/log/slurm
RUN_DIR=/run/slurm
MUNGE_RUN=/run/munge
MUNGE_KEY=/etc/munge/munge.key
PARTITION=debug
NODES=(fleming-n1 fleming-n2)
NODE_PORTS=(6818 6819)
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
  local cpus mem i
  cpus=$(nproc)
  mem=$(node_memory_mb)
  cat <<EOF
# Written by tests/slurm/cluster.sh: a two-node cluster on one machine for tests. Do not edit.
ClusterName=fleming-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR/%n
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SlurmctldPort=6817
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
EOF
  # Both nodes are this machine: each offers all its CPUs and memory (oversubscribed on purpose).
  for i in "${!NODES[@]}"; do
    echo "NodeName=${NODES[$i]} NodeHostname=localhost NodeAddr=127.0.0.1 Port=${NODE_PORTS[$i]} CPUs=$cpus RealMemory=$mem State=UNKNOWN"
  done
  echo "PartitionName=$PARTITION Nodes=$(IFS=,; echo "${NODES[*]}") Default=YES MaxTime=INFINITE State=UP"
}

# The node names must resolve: the launch wrapper's rendezvous host is the first node's name.
ensure_hosts() {
  local name
  for name in "${NODES[@]}"; do
    if ! grep -Eq "^[^#]*[[:space:]]${name}([[:space:]]|\$)" /etc/hosts; then
      log "adding $name to /etc/hosts"
      printf '127.0.0.1 %s\n' "$name" >> /etc/hosts
    fi
  done
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
  local new name
  mkdir -p "$CONF_DIR" "$STATE_DIR" "$LOG_DIR" "$RUN_DIR"
  for name in "${NODES[@]}"; do mkdir -p "$SPOOL_DIR/$name"; done
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

slurmd_pidfile() { echo "$RUN_DIR/slurmd-$1.pid"; }

node_state() {  # node_state <name>
  sinfo -h -n "$1" -o '%t' 2>/dev/null | head -n1
}

nodes_up() {
  local name
  for name in "${NODES[@]}"; do
    case $(node_state "$name" || true) in
      idle|mix|alloc) ;;
      *) return 1 ;;
    esac
  done
}

wait_idle() {
  local i name
  for i in $(seq 1 60); do
    nodes_up && return 0
    for name in "${NODES[@]}"; do
      case $(node_state "$name" || true) in
        down*|drain*|inval*)
          # A node that was down when slurmctld last ran comes back on request.
          scontrol update NodeName="$name" State=RESUME 2>/dev/null || true ;;
      esac
    done
    sleep 0.5
  done
  sinfo -N >&2 || true
  die "nodes ${NODES[*]} are not all up after 30 s; see $LOG_DIR/slurmctld.log and slurmd-*.log"
}

stop_slurmds() {
  local name
  for name in "${NODES[@]}"; do stop_daemon "slurmd $name" "$(slurmd_pidfile "$name")"; done
  stop_daemon slurmd "$RUN_DIR/slurmd.pid"  # the one-node layout of earlier versions
}

cmd_start() {
  require_root
  install_packages
  ensure_munge
  ensure_hosts
  local changed name
  changed=$(write_conf)
  if [[ -n $changed ]]; then
    stop_slurmds
    stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
  fi
  if ! pid_alive "$RUN_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    slurmctld -f "$CONF"
  fi
  for name in "${NODES[@]}"; do
    if ! pid_alive "$(slurmd_pidfile "$name")"; then
      log "starting slurmd $name"
      slurmd -f "$CONF" -N "$name"
    fi
  done
  wait_idle
  log "up: partition $PARTITION, nodes ${NODES[*]} ($(nproc) CPUs each)"
}

cmd_stop() {
  require_root
  stop_slurmds
  stop_daemon slurmctld "$RUN_DIR/slurmctld.pid"
  stop_daemon munged "$MUNGE_RUN/munged.pid"
}

cmd_status() {
  command -v sinfo >/dev/null || { log "slurm is not installed"; return 1; }
  pid_alive "$RUN_DIR/slurmctld.pid" || { log "slurmctld is not running"; return 1; }
  sinfo
  nodes_up
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
