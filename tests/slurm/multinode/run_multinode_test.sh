#!/usr/bin/env bash
# A two-node SLURM cluster in network namespaces runs conf/slurm/multi_node.sbatch (make test-slurm-multinode; root).
#
# 1. Installs Debian's slurmctld, slurmd and munge (and iproute2, util-linux) if missing.
# 2. Three network namespaces of its own, on 10.213.0.0/24 (no default route: no packet can leave them):
#      fvctl-<id>: a bridge (10.213.0.1, the machine's short host name, which slurmctld insists on) and slurmctld; the test's SLURM commands run here too;
#      fvn1-<id>:  slurmd NodeName=node1 NodeAddr=10.213.0.11 (interface fv0, joined to the bridge by a veth pair);
#      fvn2-<id>:  slurmd NodeName=node2 NodeAddr=10.213.0.12.
#    Every daemon starts in its network namespace (nsenter) and a private mount namespace (unshare) where the test
#    bind-mounts its own hosts file over /etc/hosts (node1, node2, the controller), so the jobs resolve node names like on a cluster while the
#    machine's /etc is untouched. munged (own key, socket in the temp dir) is shared: a Unix socket path works across
#    network namespaces. The root namespace gets no interface, route or address.
# 3. Generates the tiny synthetic data set and submits the real conf/slurm/multi_node.sbatch with --nodes=2
#    --ntasks-per-node=1; the requests a CPU test cannot meet are overridden on the sbatch command line
#    (--gpus-per-node=0 --cpus-per-task=1 --time=30:00; --exclusive is kept: one job per node). Jobs run
#    DDP over gloo (GLOO_SOCKET_IFNAME=fv0) with FASVLM_BIN=rank_probe.sh, which records each task's network namespace.
#    a. "mn-train": fit + test to completion. Checks (check_run.py train + check_multinode.py): world size 2, the two
#       tasks in the two node namespaces, one run directory, one events file per launch (rank 0), test metrics over both
#       ranks' shards equal to a one-process `fasvlm test` of the same checkpoint (run here, outside SLURM).
#    b. "mn-requeue": `scancel --signal=USR1` mid-training -> Lightning's hpc checkpoint -> scontrol requeue -> the
#       job runs again on both nodes and resumes to max_steps (check_run.py requeue + the probes of both launches).
#    c. "mn-lostnode" (submitted with --no-requeue, see below): once training is under way, every process in node2's
#       namespace (its slurmd, slurmstepd and the rank-1 task) is SIGKILLed. SlurmdTimeout=10 s and a 30 s
#       torch.distributed timeout make the job end NODE_FAIL/FAILED within 120 s; the log must say why. node2's slurmd
#       is restarted, the same job is submitted again and resumes from the newest checkpoint to max_steps.
#       (--no-requeue: with the template's --requeue, SLURM itself requeues a job whose node failed; the test wants the
#       failure visible and the manual resubmission path.)
# 4. Stops everything it started (trap), also on failure: the jobs, every process in the three namespaces, munged,
#    then deletes the namespaces (the bridge and veth pairs go with them); keeps the temp dir (logs) on failure or with
#    FASVLM_SLURM_KEEP=1.
#
# Environment: FASVLM_VENV (default <repo>/.venv), FASVLM_SLURM_KEEP=1, FASVLM_SLURM_JOB_TIMEOUT (s, default 900).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../../.." && pwd)
venv=${FASVLM_VENV:-$repo/.venv}
venv=$(cd "$venv" 2>/dev/null && pwd) || { echo "no virtual environment at ${FASVLM_VENV:-$repo/.venv}" >&2; exit 1; }
py=$venv/bin/python
keep=${FASVLM_SLURM_KEEP:-0}
job_timeout=${FASVLM_SLURM_JOB_TIMEOUT:-900}
t_start=$SECONDS

log() { printf '[slurm-mn +%4ss] %s\n' "$((SECONDS - t_start))" "$*"; }
die() { log "FAIL: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root: network namespaces, munged, slurmctld and slurmd need root"
[[ -x $venv/bin/fasvlm ]] || die "$venv/bin/fasvlm not found: run 'make venv' first (or set FASVLM_VENV)"

# --- 1. packages ------------------------------------------------------------------------------------------------------
need_install=0
for cmd in slurmctld slurmd munged sbatch srun scontrol scancel sinfo; do
    command -v "$cmd" >/dev/null 2>&1 || need_install=1
done
for cmd in ip nsenter unshare; do
    command -v "$cmd" >/dev/null 2>&1 || need_install=1
done
if ((need_install)); then
    log "installing slurm-wlm, munge, iproute2 and util-linux (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge iproute2 util-linux >/dev/null
fi
log "$(slurmctld -V), $(munged -V 2>&1 | head -n1)"

# --- 2. namespaces and cluster ----------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/fasvlm-slurm-mn.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{munge,state,spool,run,log,logs,proj,probe}
chmod 700 "$work/munge"
export SLURM_CONF=$work/slurm.conf
tag=$(basename "$work" | tr -dc 'a-zA-Z0-9' | tail -c 6)
ns_ctl=fvctl-$tag ns_n1=fvn1-$tag ns_n2=fvn2-$tag
created_ns=()
munged_pid=""

ns_pids() { ip netns pids "$1" 2>/dev/null || true; }

kill_ns() {  # kill_ns NS SIGNAL: signal every process in the namespace
    local pids
    pids=$(ns_pids "$1")
    [[ -n $pids ]] && kill "-$2" $pids 2>/dev/null
    return 0
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if ((${#created_ns[@]})); then
        log "stopping: jobs, slurmd x2, slurmctld, munged; deleting namespaces ${created_ns[*]}"
        if [[ -n $(ns_pids "$ns_ctl") ]]; then
            ip netns exec "$ns_ctl" scancel --quiet --full --user=root 2>/dev/null
            for _ in $(seq 30); do
                [[ -z $(ip netns exec "$ns_ctl" squeue -h -o %i 2>/dev/null) ]] && break
                sleep 0.5
            done
        fi
        for ns in "$ns_n2" "$ns_n1" "$ns_ctl"; do kill_ns "$ns" TERM; done
        for _ in $(seq 20); do
            [[ -z $(ns_pids "$ns_n1")$(ns_pids "$ns_n2")$(ns_pids "$ns_ctl") ]] && break
            sleep 0.5
        done
        for ns in "${created_ns[@]}"; do kill_ns "$ns" KILL; done
    fi
    if [[ -n $munged_pid ]]; then
        kill -TERM "$munged_pid" 2>/dev/null
        for _ in $(seq 20); do kill -0 "$munged_pid" 2>/dev/null || break; sleep 0.25; done
        kill -KILL "$munged_pid" 2>/dev/null
    fi
    # anything left from this cluster outside the namespaces (none expected): processes whose environment names our
    # slurm.conf
    for envfile in /proc/[0-9]*/environ; do
        pid=${envfile#/proc/}; pid=${pid%/environ}
        if [[ $pid != "$$" ]] && tr '\0' '\n' 2>/dev/null <"$envfile" | grep -qxF "SLURM_CONF=$SLURM_CONF"; then
            log "killing leftover process $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-80))"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    for ns in "${created_ns[@]}"; do ip netns del "$ns" 2>/dev/null; done
    if ((rc == 0)) && [[ $keep != 1 ]]; then
        rm -rf "$work"
    else
        log "logs and runs kept in $work"
        if ((rc != 0)); then
            for f in "$work"/logs/*.out "$work"/log/slurmctld.log "$work"/log/slurmd-node*.log; do
                [[ -f $f ]] || continue
                echo "===== tail $f"
                tail -n 40 "$f"
            done
        fi
    fi
    log "total $((SECONDS - t_start)) s, exit code $rc"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for ns in "$ns_ctl" "$ns_n1" "$ns_n2"; do
    ip netns add "$ns" || die "ip netns add $ns failed"
    created_ns+=("$ns")
    ip -n "$ns" link set lo up
done
ip -n "$ns_ctl" link add br0 type bridge
ip -n "$ns_ctl" addr add 10.213.0.1/24 dev br0
ip -n "$ns_ctl" link set br0 up
i=0
for ns in "$ns_n1" "$ns_n2"; do
    i=$((i + 1))
    # created inside the ctl namespace, the peer end moved straight into the node namespace: the root namespace never
    # holds either end
    ip -n "$ns_ctl" link add "p$i" type veth peer name fv0 netns "$ns"
    ip -n "$ns_ctl" link set "p$i" master br0 up
    ip -n "$ns" addr add "10.213.0.1$i/24" dev fv0
    ip -n "$ns" link set fv0 up
done
for ns in "${created_ns[@]}"; do
    routes=$(ip -n "$ns" route show)
    [[ $routes != *default* ]] || die "namespace $ns has a default route: $routes"
done
log "namespaces $ns_ctl (bridge 10.213.0.1), $ns_n1 (10.213.0.11), $ns_n2 (10.213.0.12); no default route"

ctl_host=$(hostname -s)  # slurmctld starts only on a host named in SlurmctldHost
cat >"$work/hosts" <<EOF
127.0.0.1 localhost
10.213.0.1 $ctl_host
10.213.0.11 node1
10.213.0.12 node2
EOF

in_ns() {  # in_ns NS CMD...: run CMD in the network namespace, with the test's hosts file as /etc/hosts
    local ns=$1; shift
    # nsenter (not `ip netns exec`, which remounts /sys and hides /sys/fs/cgroup that slurmd needs) + a private mount
    # namespace of its own for the hosts file: the machine's /etc/hosts stays as it is
    nsenter --net="/run/netns/$ns" unshare --mount --propagation private \
        /bin/bash -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' _ "$work/hosts" "$@"
}
sl() { ip netns exec "$ns_ctl" "$@"; }  # SLURM client commands talk to slurmctld on 10.213.0.1

dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --foreground --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/munged.seed" \
    >"$work/log/munged.out" 2>&1 &
munged_pid=$!

: >"$work/plugstack.conf"  # no SPANK plugins (the host's /etc/slurm/plugstack.conf is not read)
cat >"$SLURM_CONF" <<EOF
# two-node test cluster in network namespaces written by tests/slurm/multinode/run_multinode_test.sh
ClusterName=fasvlmmn
SlurmctldHost=$ctl_host(10.213.0.1)
SlurmctldPort=6817
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$work/munge/munge.sock
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool/%n
SlurmctldPidFile=$work/run/slurmctld.pid
SlurmdPidFile=$work/run/slurmd-%n.pid
SlurmctldLogFile=$work/log/slurmctld.log
SlurmdLogFile=$work/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$work/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
MpiDefault=none
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=10
MinJobAge=3600
InactiveLimit=0
MessageTimeout=10
# a lost node is declared DOWN within ~10-20 s (the lost-node case)
SlurmdTimeout=10
TCPTimeout=5
NodeName=node1 NodeAddr=10.213.0.11 CPUs=1 RealMemory=2048 State=UNKNOWN
NodeName=node2 NodeAddr=10.213.0.12 CPUs=1 RealMemory=2048 State=UNKNOWN
PartitionName=test Nodes=node1,node2 Default=YES MaxTime=INFINITE State=UP
EOF

for _ in $(seq 40); do [[ -S $work/munge/munge.sock ]] && break; sleep 0.25; done
[[ -S $work/munge/munge.sock ]] || die "munged did not start: $(cat "$work/log/munged.out")"
in_ns "$ns_ctl" slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
start_slurmd() {  # start_slurmd N
    local ns
    ns=$([[ $1 == 1 ]] && echo "$ns_n1" || echo "$ns_n2")
    in_ns "$ns" slurmd -D -N "node$1" -f "$SLURM_CONF" >>"$work/log/slurmd-node$1.out" 2>&1 &
}
start_slurmd 1
start_slurmd 2

wait_idle() {  # wait_idle SECONDS: both nodes idle
    local states="" deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        states=$(timeout 15 ip netns exec "$ns_ctl" sinfo -h -N -o '%N=%t' 2>/dev/null | sort | paste -sd' ' - || true)
        [[ $states == "node1=idle node2=idle" ]] && return 0
        sleep 0.5
    done
    die "nodes not idle after $1 s (states '$states'); see $work/log"
}
wait_idle 60
log "cluster up: slurmctld in $ns_ctl, slurmd node1 in $ns_n1, slurmd node2 in $ns_n2, both idle ($work)"

# --- 3. project directory and data ------------------------------------------------------------------------------------
proj=$work/proj
ln -s "$repo/conf" "$proj/conf"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1  # nothing here may reach outside (the daemons' namespaces have no route)
log "generating the tiny synthetic data set"
(cd "$proj" && "$venv/bin/fasvlm" synth --out data/synthetic --preset tiny >"$work/log/synth.out" 2>&1) ||
    die "fasvlm synth failed: $(tail -n 20 "$work/log/synth.out")"

# The environment sbatch exports to the job (the submitting shell's, as on a cluster):
export PATH=$venv/bin:$PATH TOKENIZERS_PARALLELISM=false
export GLOO_SOCKET_IFNAME=fv0                  # the nodes' interface (on a cluster: the fabric's, e.g. ib0 / eth0)
export FASVLM_BIN=$here/rank_probe.sh FASVLM_REAL_BIN=$venv/bin/fasvlm FASVLM_PROBE_DIR=$work/probe
unset MASTER_ADDR MASTER_PORT                  # Lightning takes them from SLURM: first node of the list, job id
# The tiny set: 12 training images, 6 per rank, batch 2: 3 steps per epoch; max_epochs -1 so that max_steps ends
# training. 30 s torch.distributed timeout: a rank waiting for a lost peer gives up quickly (the lost-node case).
fit_args=(--config conf/baseline/tiny.yaml --config conf/strategy/ddp_cpu.yaml
          --data.init_args.batch_size 2 --data.init_args.num_workers 0 --data.init_args.val_fraction 0.34
          --trainer.max_epochs -1 --trainer.log_every_n_steps 1
          --trainer.strategy.init_args.timeout 0:00:30)
# multi_node.sbatch asks for 8 GPUs, 8 tasks and 12 CPUs per node; the command line overrides what 2 one-CPU
# namespaces cannot give (the file itself is submitted unchanged)
sbatch_overrides=(--nodes=2 --ntasks-per-node=1 --gpus-per-node=0 --cpus-per-task=1 --time=30:00)

job_field() {  # job_field JOBID FIELD -> value from `scontrol show job -o`
    sl scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}

wait_job() {  # wait_job JOBID [TIMEOUT] -> the job's final state
    local id=$1 deadline=$((SECONDS + ${2:-$job_timeout})) st
    while ((SECONDS < deadline)); do
        st=$(job_field "$id" JobState)
        case $st in
            COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE | PREEMPTED)
                echo "$st"; return 0 ;;
        esac
        sleep 1
    done
    echo "TIMEOUT_WAITING($(job_field "$id" JobState))"
}

submit() {  # submit NAME [SBATCH OPTIONS...] -- FASVLM ARGS... -> job id
    local name=$1; shift
    local opts=()
    while [[ $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    # FASVLM_RUN_DIR (documented by the template): the run directory does not depend on how fasvlm names runs
    FASVLM_RUN_DIR=runs/$name sl sbatch --parsable --job-name="$name" --output="$work/logs/%x-%j.out" --chdir="$proj" \
        "${sbatch_overrides[@]}" "${opts[@]}" "$repo/conf/slurm/multi_node.sbatch" "$@"
}

wait_for_file() {  # wait_for_file JOBID PATH
    local deadline=$((SECONDS + job_timeout)) st
    until [[ -f $2 ]]; do
        st=$(job_field "$1" JobState)
        [[ $st == PENDING || $st == RUNNING || $st == CONFIGURING ]] || die "job $1 is $st before $2 appeared"
        ((SECONDS < deadline)) || die "no $2 from job $1 after ${job_timeout} s"
        sleep 0.5
    done
}

ns_inode() { ip netns exec "$1" stat -L -c %i /proc/self/ns/net; }
node_ns="node1=$(ns_inode "$ns_n1"),node2=$(ns_inode "$ns_n2")"
check_mn() { "$py" "$here/check_multinode.py" "$@" --probe-dir "$work/probe" --node-ns "$node_ns"; }

# a. train and test to completion on two nodes
steps_a=9
t0=$SECONDS
id_a=$(submit mn-train -- "${fit_args[@]}" --trainer.max_steps "$steps_a")
log "job $id_a (mn-train): fit max_steps=$steps_a, then test, on 2 nodes; waiting"
st=$(wait_job "$id_a")
exit_a=$(job_field "$id_a" ExitCode)
log "job $id_a: $st, exit code $exit_a, nodes $(job_field "$id_a" NodeList), $((SECONDS - t0)) s"
[[ $st == COMPLETED && $exit_a == 0:0 ]] || die "job $id_a ended $st with exit code $exit_a ($work/logs)"
"$py" "$repo/tests/slurm/check_run.py" train "$proj/runs/mn-train" --max-steps "$steps_a" || die "train job checks"
log "one-process evaluation of the tested checkpoint (outside SLURM, no network)"
ckpt_a=$(cd "$proj" && "$py" -c 'import json, os, sys; print(os.path.abspath(json.load(open(sys.argv[1]))["ckpt_path"]))' \
         runs/mn-train/test_metrics.json)
[[ -f $ckpt_a ]] || die "test_metrics.json names checkpoint '$ckpt_a', which does not exist"
(cd "$proj" && env -u SLURM_CONF "$venv/bin/fasvlm" test --config conf/baseline/tiny.yaml \
    --data.init_args.batch_size 2 --data.init_args.num_workers 0 --data.init_args.val_fraction 0.34 \
    --trainer.devices 1 --trainer.default_root_dir "$work/eval1" --ckpt_path "$ckpt_a" \
    >"$work/log/eval1.out" 2>&1) || die "one-process fasvlm test failed: $(tail -n 20 "$work/log/eval1.out")"
check_mn train "$proj/runs/mn-train" --job "$id_a" --launches 1 --steps 2 --runs-root "$proj/runs" \
    --single "$work/eval1/test_metrics.json" || die "multi-node train job checks"

# b. SIGUSR1 mid-training -> hpc checkpoint -> requeue -> resume on both nodes -> same final step
steps_b=24
t0=$SECONDS
run_b=$proj/runs/mn-requeue
id_b=$(FASVLM_TEST=0 submit mn-requeue -- "${fit_args[@]}" --trainer.max_steps "$steps_b")
log "job $id_b (mn-requeue): fit max_steps=$steps_b; signalling once last.ckpt exists"
wait_for_file "$id_b" "$run_b/checkpoints/last.ckpt"
log "job $id_b: training under way (last.ckpt written); scancel --signal=USR1 $id_b"
sl scancel --signal=USR1 "$id_b"
restarts=0
for _ in $(seq 120); do
    restarts=$(job_field "$id_b" Restarts)
    [[ ${restarts:-0} -ge 1 ]] && break
    sleep 0.5
done
[[ ${restarts:-0} -ge 1 ]] || die "job $id_b was not requeued within 60 s of SIGUSR1 (state $(job_field "$id_b" JobState))"
log "job $id_b requeued (Restarts=$restarts, state $(job_field "$id_b" JobState))"
# slurmctld makes a requeued batch job eligible again only ~2 minutes later (Reason=BeginTime); start it at once
for _ in $(seq 120); do
    st=$(job_field "$id_b" JobState)
    if [[ $st == PENDING ]]; then
        log "job $id_b pending (reason $(job_field "$id_b" Reason)); scontrol update JobId=$id_b StartTime=now"
        sl scontrol update JobId="$id_b" StartTime=now
        break
    fi
    [[ $st == RUNNING ]] && break
    sleep 0.5
done
st=$(wait_job "$id_b")
exit_b=$(job_field "$id_b" ExitCode)
restarts=$(job_field "$id_b" Restarts)
log "job $id_b: $st, exit code $exit_b, restarts $restarts, $((SECONDS - t0)) s"
[[ $st == COMPLETED && $exit_b == 0:0 ]] || die "job $id_b ended $st with exit code $exit_b"
[[ $restarts == 1 ]] || die "job $id_b restarted $restarts times, expected 1"
"$py" "$repo/tests/slurm/check_run.py" requeue "$run_b" --max-steps "$steps_b" \
    --log "$work/logs/mn-requeue-$id_b.out" || die "requeue job checks"
check_mn requeue "$run_b" --job "$id_b" --launches 2 --steps 1 --runs-root "$proj/runs" || die "multi-node requeue checks"

# c. lost node: kill everything in node2's namespace mid-run -> the job fails fast -> resubmission resumes
steps_c=24
t0=$SECONDS
run_c=$proj/runs/mn-lostnode
id_c=$(FASVLM_TEST=0 submit mn-lostnode --no-requeue -- "${fit_args[@]}" --trainer.max_steps "$steps_c")
log "job $id_c (mn-lostnode): fit max_steps=$steps_c; killing node2 once last.ckpt exists"
wait_for_file "$id_c" "$run_c/checkpoints/last.ckpt"
kill_step=$("$py" "$repo/tests/slurm/check_run.py" step "$run_c/checkpoints/last.ckpt")
t_kill=$SECONDS
log "job $id_c: last.ckpt at step $kill_step; SIGKILL to every process in $ns_n2: $(ns_pids "$ns_n2" | paste -sd' ' -)"
kill_ns "$ns_n2" KILL
st=$(wait_job "$id_c" 180)
fail_s=$((SECONDS - t_kill))
log "job $id_c: $st $fail_s s after the kill, exit code $(job_field "$id_c" ExitCode), reason $(job_field "$id_c" Reason)"
[[ $st == NODE_FAIL || $st == FAILED ]] || die "job $id_c ended '$st' after node2 was killed (expected NODE_FAIL or FAILED)"
((fail_s <= 120)) || die "job $id_c took $fail_s s to fail after node2 was lost (limit 120 s)"
[[ -z $(ns_pids "$ns_n2") ]] || die "processes left in $ns_n2 after SIGKILL: $(ns_pids "$ns_n2")"
log "restarting node2's slurmd; resubmitting mn-lostnode"
start_slurmd 2
wait_idle 90
id_c2=$(FASVLM_TEST=0 submit mn-lostnode -- "${fit_args[@]}" --trainer.max_steps "$steps_c")
st=$(wait_job "$id_c2")
exit_c2=$(job_field "$id_c2" ExitCode)
log "job $id_c2 (mn-lostnode resubmitted): $st, exit code $exit_c2, $((SECONDS - t0)) s since the first submission"
[[ $st == COMPLETED && $exit_c2 == 0:0 ]] || die "job $id_c2 ended $st with exit code $exit_c2"
check_mn lostnode "$run_c" --job "$id_c" --resumed-job "$id_c2" --max-steps "$steps_c" --kill-step "$kill_step" \
    --log "$work/logs/mn-lostnode-$id_c.out" --resumed-log "$work/logs/mn-lostnode-$id_c2.out" \
    --runs-root "$proj/runs" || die "lost-node checks"
log "PASS: 2-node train+test (metrics = one-process evaluation), SIGUSR1 -> requeue -> resume, lost node -> fail" \
    "in ${fail_s} s -> resubmission resumes"
