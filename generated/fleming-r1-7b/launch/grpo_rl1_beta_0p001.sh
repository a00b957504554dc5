#!/usr/bin/env bash
# Launch wrapper for fleming-r1-7b/grpo_rl1_beta_0p001: 1 node(s) x 8 process(es), world size 8.
# Rendered by fleming_dsl.emit.launch from templates/launch/train.sh.j2; do not edit by hand.
#
# Under SLURM this script re-runs itself through srun, one copy per node; each copy starts one
# accelerate launcher with its node rank ($SLURM_NODEID) and the first host of the job's
# nodelist as the rendezvous address. Outside SLURM it runs on this machine alone.
# Arguments given to the script are appended to the program's arguments.
set -euo pipefail

PROCS_PER_NODE=8
PLANNED_NODES=1
PORT="${FLEMING_MAIN_PORT:-29500}"
PYTHON="${FLEMING_PYTHON:-python}"
PROGRAM=(-m fleming_dsl.cli job grpo --config generated/fleming-r1-7b/jobs/grpo_rl1_beta_0p001.json)

log() { printf '[launch %s] %s\n' fleming-r1-7b/grpo_rl1_beta_0p001 "$*" >&2; }

all_hosts() {
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$1"
  else
    "$PYTHON" -m fleming_dsl.emit.launch hosts "$1"
  fi
}

first_host() {
  if command -v scontrol >/dev/null 2>&1; then
    scontrol show hostnames "$1" | head -n 1
  else
    "$PYTHON" -m fleming_dsl.emit.launch first-host "$1"
  fi
}

# Start this node's launcher: it forks PROCS_PER_NODE processes of the program.
run_launcher() {
  local node_rank=$1 num_nodes=$2 main_host=$3
  shift 3
  log "node rank $node_rank of $num_nodes, rendezvous $main_host:$PORT, world size $((num_nodes * PROCS_PER_NODE))"
  exec "$PYTHON" -m accelerate.commands.launch \
    --config_file generated/fleming-r1-7b/accelerate/grpo_rl1_beta_0p001.yaml \
    --num_machines "$num_nodes" \
    --machine_rank "$node_rank" \
    --main_process_ip "$main_host" \
    --main_process_port "$PORT" \
    --num_processes "$((num_nodes * PROCS_PER_NODE))" \
    "${PROGRAM[@]}" "$@"
}

if [[ -n "${FLEMING_LAUNCH_ON_NODE:-}" ]]; then
  # One of the srun copies below, one task per node: the task number is the node's rank among
  # the training nodes (SLURM_NODEID would count a vLLM server's nodes too).
  run_launcher "${SLURM_PROCID:?srun sets SLURM_PROCID}" "$FLEMING_NUM_NODES" "$FLEMING_MAIN_HOST" "$@"
fi

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
  num_nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
  if (( num_nodes != PLANNED_NODES )); then
    log "warning: the job has $num_nodes node(s) but the spec asks for $PLANNED_NODES; using $num_nodes"
  fi
  main_host="$(first_host "${SLURM_JOB_NODELIST:?sbatch sets SLURM_JOB_NODELIST}")"
  first_node=0
  export FLEMING_LAUNCH_ON_NODE=1 FLEMING_NUM_NODES="$num_nodes" FLEMING_MAIN_HOST="$main_host"
  log "SLURM job $SLURM_JOB_ID: srun on $num_nodes node(s) from node $first_node of $SLURM_JOB_NODELIST"
  # --overlap: Snakemake's slurm executor already runs this rule inside an `srun -n1` step that
  # holds the job's CPUs and memory; without it this step would wait for them forever.
  exec srun --overlap --nodes="$num_nodes" --ntasks="$num_nodes" --ntasks-per-node=1 \
    --relative="$first_node" --kill-on-bad-exit=1 bash "${BASH_SOURCE[0]}" "$@"
fi

# No SLURM: this machine alone. FLEMING_ALL_RANKS_HERE=1 starts every rank the plan asks for
# (all nodes' worth) on this machine: a workstation standing in for the cluster, and the tests.
if [[ -n "${FLEMING_ALL_RANKS_HERE:-}" ]] && (( PLANNED_NODES * PROCS_PER_NODE > 1 )); then
  PROCS_PER_NODE=$((PLANNED_NODES * PROCS_PER_NODE))
  run_launcher 0 1 127.0.0.1 "$@"
fi
if (( PROCS_PER_NODE > 1 )); then
  run_launcher 0 1 127.0.0.1 "$@"
fi
log "no SLURM job: running directly"
exec "$PYTHON" "${PROGRAM[@]}" "$@"
