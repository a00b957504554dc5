#!/usr/bin/env bash
# Launch wrapper for fleming-r1-32b/grpo_rl2: 4 node(s) x 8 process(es), world size 32.
# Rendered by fleming_dsl.emit.launch from templates/launch/train.sh.j2; do not edit by hand.
#
# Under SLURM this script re-runs itself through srun, one copy per node; each copy starts one
# accelerate launcher with its node rank ($SLURM_NODEID) and the first host of the job's
# nodelist as the rendezvous address. Outside SLURM it runs on this machine alone.
# Arguments given to the script are appended to the program's arguments.
set -euo pipefail

PROCS_PER_NODE=8
PLANNED_NODES=4
PORT="${FLEMING_MAIN_PORT:-29500}"
PYTHON="${FLEMING_PYTHON:-python}"
PROGRAM=(-m fleming_dsl.cli job grpo --config generated/fleming-r1-32b/jobs/grpo_rl2.json)

log() { printf '[launch %s] %s\n' fleming-r1-32b/grpo_rl2 "$*" >&2; }

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
  "$PYTHON" -m accelerate.commands.launch \
    --config_file generated/fleming-r1-32b/accelerate/grpo_rl2.yaml \
    --num_machines "$num_nodes" \
    --machine_rank "$node_rank" \
    --main_process_ip "$main_host" \
    --main_process_port "$PORT" \
    --num_processes "$((num_nodes * PROCS_PER_NODE))" \
    "${PROGRAM[@]}" "$@"
  exit 0  # training succeeded (set -e exits on failure); the EXIT trap stops the server
}

if [[ -n "${FLEMING_LAUNCH_ON_NODE:-}" ]]; then
  # One of the srun copies below, one task per node: the task number is the node's rank among
  # the training nodes (SLURM_NODEID would count a vLLM server's nodes too).
  run_launcher "${SLURM_PROCID:?srun sets SLURM_PROCID}" "$FLEMING_NUM_NODES" "$FLEMING_MAIN_HOST" "$@"
fi

# ---------------------------------------------------------------- the stage's vLLM server
# 8 GPU(s) serve rollouts (trl vllm-serve), on 1 whole node(s) under SLURM
# (the first nodes of the job); the trainer gets its address in $FLEMING_VLLM_SERVER_BASE_URL.
# It is stopped when training ends, whether it succeeded or failed, or when this script is killed.
SERVER_PROGRAM=(-m trl.cli.main vllm-serve --model runs/fleming-r1-32b/stages/rl1 --tensor_parallel_size 8 --data_parallel_size 1 --gpu_memory_utilization 0.9)
SERVER_PYTHON="${FLEMING_SERVER_PYTHON:-$PYTHON}"
SERVER_PORT="${FLEMING_VLLM_PORT:-8000}"
SERVER_TIMEOUT=240
SERVER_NODES=1
SERVER_GPUS=8
server_pid=""

stop_server() {
  [[ -n "$server_pid" ]] || return 0
  if kill -0 "$server_pid" 2>/dev/null; then
    log "stopping the vLLM server (pid $server_pid)"
    kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
  fi
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}
trap stop_server EXIT
trap 'exit 143' TERM INT HUP

# GET /health over bash's /dev/tcp (no curl on compute nodes): 0 when it answers 200.
healthy() {
  # shellcheck disable=SC2016  # $1 and $2 are the inner shell's arguments
  timeout 5 bash -c 'exec 3<>"/dev/tcp/$1/$2" && printf "GET /health HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" >&3 && head -n 1 <&3 | grep -q " 200"' _ "$1" "$2" 2>/dev/null
}

# start_server HOST: the server in the background, then wait for its health endpoint.
start_server() {
  local host=$1 deadline=$((SECONDS + SERVER_TIMEOUT))
  if [[ -n "${SLURM_JOB_ID:-}" ]] && (( SERVER_NODES > 0 )); then
    srun --overlap --nodes="$SERVER_NODES" --ntasks=1 --relative=0 --kill-on-bad-exit=1 \
      "$SERVER_PYTHON" "${SERVER_PROGRAM[@]}" --port "$SERVER_PORT" &
  else
    if (( SERVER_GPUS > 0 )); then
      CUDA_VISIBLE_DEVICES="$(seq -s, 0 $((SERVER_GPUS - 1)))" setsid "$SERVER_PYTHON" "${SERVER_PROGRAM[@]}" --port "$SERVER_PORT" &
    else
      setsid "$SERVER_PYTHON" "${SERVER_PROGRAM[@]}" --port "$SERVER_PORT" &
    fi
  fi
  server_pid=$!
  log "vLLM server starting (pid $server_pid) at http://$host:$SERVER_PORT; waiting up to ${SERVER_TIMEOUT}s for /health"
  until healthy "$host" "$SERVER_PORT"; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      log "error: the vLLM server exited before answering http://$host:$SERVER_PORT/health"
      exit 1
    fi
    if (( SECONDS >= deadline )); then
      log "error: the vLLM server at http://$host:$SERVER_PORT did not answer /health within ${SERVER_TIMEOUT}s (vllm_server_timeout)"
      exit 1
    fi
    sleep 1
  done
  export FLEMING_VLLM_SERVER_BASE_URL="http://$host:$SERVER_PORT"
  log "vLLM server healthy at $FLEMING_VLLM_SERVER_BASE_URL"
}

if [[ -n "${SLURM_JOB_ID:-}" ]]; then
  num_nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}"
  if (( num_nodes != PLANNED_NODES )); then
    log "warning: the job has $num_nodes node(s) but the spec asks for $PLANNED_NODES; using $num_nodes"
  fi
  main_host="$(first_host "${SLURM_JOB_NODELIST:?sbatch sets SLURM_JOB_NODELIST}")"
  first_node=0
  start_server "$main_host"
  if (( SERVER_NODES > 0 )); then  # training on the nodes after the server's
    first_node=$SERVER_NODES
    num_nodes=$((num_nodes - SERVER_NODES))
    main_host="$(all_hosts "$SLURM_JOB_NODELIST" | sed -n "$((first_node + 1))p")"
  fi
  export FLEMING_LAUNCH_ON_NODE=1 FLEMING_NUM_NODES="$num_nodes" FLEMING_MAIN_HOST="$main_host"
  log "SLURM job $SLURM_JOB_ID: srun on $num_nodes node(s) from node $first_node of $SLURM_JOB_NODELIST"
  # --overlap: Snakemake's slurm executor already runs this rule inside an `srun -n1` step that
  # holds the job's CPUs and memory; without it this step would wait for them forever.
  srun --overlap --nodes="$num_nodes" --ntasks="$num_nodes" --ntasks-per-node=1 \
    --relative="$first_node" --kill-on-bad-exit=1 bash "${BASH_SOURCE[0]}" "$@"
  exit 0
fi

start_server 127.0.0.1
PLANNED_NODES=$((PLANNED_NODES - SERVER_NODES))  # FLEMING_ALL_RANKS_HERE: the training nodes' ranks
if (( SERVER_GPUS > 0 )); then  # training on the GPUs after the server's
  CUDA_VISIBLE_DEVICES="$(seq -s, "$SERVER_GPUS" $((SERVER_GPUS + PROCS_PER_NODE - 1)))"
  export CUDA_VISIBLE_DEVICES
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
"$PYTHON" "${PROGRAM[@]}" "$@"
