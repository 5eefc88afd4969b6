#!/usr/bin/env bash
# A real SLURM test of the project's sbatch template (make test-slurm; run as root).
#
# 1. Installs Debian's slurmctld, slurmd and munge if missing.
# 2. Starts a private one-node cluster on loopback: munged (own key and socket), slurmctld and slurmd (NodeName=localhost,
#    CPUs=2, no cgroups: proctrack/linuxproc, task/none, select/cons_tres, JobRequeue=1), every file under one temp dir.
# 3. Generates the tiny synthetic data set and submits conf/slurm/cpu_gloo.sbatch (2 tasks, DDP over gloo, Lightning's
#    SLURMEnvironment):
#    a. job "fasvlm-train": trains and tests to completion (exit code 0, last.ckpt at max_steps, test_metrics.json);
#    b. job "fasvlm-requeue": once training is under way, `scancel --signal=USR1 <job>` (without --batch, scancel
#       signals every job step, i.e. the srun tasks, and not the batch shell), as SLURM does with --signal=SIGUSR1@90
#       before the time limit. Lightning's handler saves <run>/hpc_ckpt_1.ckpt, rank 0 runs `scontrol requeue`, SLURM
#       stops and requeues the job (the test lifts SLURM's ~2 min BeginTime hold), the batch script runs again and
#       `--ckpt_path last` resumes from the newest checkpoint: hpc_ckpt_1.ckpt, or a last.ckpt the old processes wrote
#       at an epoch end between the requeue and SLURM's SIGKILL (Lightning ignores SIGTERM when it requeues).
#       Checks (tests/slurm/check_run.py): exit code 0 after exactly one restart, last.ckpt holds global_step ==
#       max_steps, the hpc checkpoint was written mid-training, the handler ran, config.yaml and TensorBoard events
#       continue in the same run directory, the resumed launch logging every step from its resume point to the end.
#    c. job "fasvlm-sigterm" (issue 14): `scancel` while training: SIGTERM -> fasvlm saves a resumable last.ckpt and
#       exits 143, the script runs no test (job CANCELLED); the same job name submitted again resumes
#       runs/baseline-tiny/fasvlm-sigterm (FASVLM_RUN_NAME = job name) and finishes with last.ckpt at max_steps + test.
#    d. jobs "fasvlm-conc1" and "fasvlm-conc2" (issue 14): one task each, running at the same time, each in its own
#       run directory runs/baseline-tiny/<job name>.
#    e. `fasvlm sweep --slurm conf/slurm/cpu_gloo.sbatch --seeds 0-2 --submit`: a 3-task job array, one run directory
#       per seed (sweep_array_check).
# 4. Stops everything it started (trap), also on failure; keeps the temp dir (logs) on failure or with
#    FASVLM_SLURM_KEEP=1.
#
# Environment: FASVLM_VENV (default <repo>/.venv), FASVLM_SLURM_KEEP=1, FASVLM_SLURM_JOB_TIMEOUT (s, default 900).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${FASVLM_VENV:-$repo/.venv}
venv=$(cd "$venv" 2>/dev/null && pwd) || { echo "no virtual environment at ${FASVLM_VENV:-$repo/.venv}" >&2; exit 1; }
py=$venv/bin/python
keep=${FASVLM_SLURM_KEEP:-0}
job_timeout=${FASVLM_SLURM_JOB_TIMEOUT:-900}
t_start=$SECONDS

log() { printf '[slurm-test +%4ss] %s\n' "$((SECONDS - t_start))" "$*"; }
die() { log "FAIL: $*"; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root: the test cluster's munged, slurmctld and slurmd run as root"
[[ -x $venv/bin/fasvlm ]] || die "$venv/bin/fasvlm not found: run 'make venv' first (or set FASVLM_VENV)"

# --- 1. packages ------------------------------------------------------------------------------------------------------
need_install=0
for cmd in slurmctld slurmd munged sbatch srun scontrol scancel sinfo; do
    command -v "$cmd" >/dev/null 2>&1 || need_install=1
done
if ((need_install)); then
    log "installing slurm-wlm and munge (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
log "$(slurmctld -V), $(munged -V 2>&1 | head -n1)"

# --- 2. cluster -------------------------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/fasvlm-slurm.XXXXXX)
chmod 755 "$work"
mkdir -p "$work"/{munge,state,spool,run,log,logs,proj}
chmod 700 "$work/munge"
export SLURM_CONF=$work/slurm.conf
daemon_pids=()

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [[ -f $SLURM_CONF ]] && ((${#daemon_pids[@]})); then
        log "stopping: jobs, slurmd, slurmctld, munged"
        scancel --quiet --full --user=root 2>/dev/null
        for _ in $(seq 60); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    for ((i = ${#daemon_pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${daemon_pids[i]}" 2>/dev/null
    done
    for pid in "${daemon_pids[@]}"; do
        for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$pid" 2>/dev/null
    done
    # anything left from this cluster (slurmstepd, job tasks): processes whose environment names our slurm.conf
    for envfile in /proc/[0-9]*/environ; do
        pid=${envfile#/proc/}; pid=${pid%/environ}
        if [[ $pid != "$$" ]] && tr '\0' '\n' 2>/dev/null <"$envfile" | grep -qxF "SLURM_CONF=$SLURM_CONF"; then
            log "killing leftover process $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-80))"
            kill -KILL "$pid" 2>/dev/null
        fi
    done
    if ((rc == 0)) && [[ $keep != 1 ]]; then
        rm -rf "$work"
    else
        log "logs and runs kept in $work"
        if ((rc != 0)); then
            for f in "$work"/logs/*.out "$work"/log/slurmctld.log "$work"/log/slurmd-localhost.log; do
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

read -r ctld_port slurmd_port < <("$py" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

dd if=/dev/urandom of="$work/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$work/munge/munge.key"
munged --foreground --force --key-file="$work/munge/munge.key" --socket="$work/munge/munge.sock" \
    --pid-file="$work/munge/munged.pid" --log-file="$work/munge/munged.log" --seed-file="$work/munge/munged.seed" \
    >"$work/log/munged.out" 2>&1 &
daemon_pids+=($!)

: >"$work/plugstack.conf"  # no SPANK plugins (the host's /etc/slurm/plugstack.conf is not read)
cat >"$SLURM_CONF" <<EOF
# one-node test cluster written by tests/slurm/run_slurm_test.sh
ClusterName=fasvlmtest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
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
KillWait=15
MinJobAge=3600
InactiveLimit=0
MessageTimeout=30
SlurmdTimeout=120
NodeName=localhost NodeAddr=127.0.0.1 CPUs=2 RealMemory=2048 State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

for _ in $(seq 40); do [[ -S $work/munge/munge.sock ]] && break; sleep 0.25; done
[[ -S $work/munge/munge.sock ]] || die "munged did not start: $(cat "$work/log/munged.out")"
slurmctld -D -i -f "$SLURM_CONF" >"$work/log/slurmctld.out" 2>&1 &
daemon_pids+=($!)
slurmd -D -N localhost -f "$SLURM_CONF" >"$work/log/slurmd.out" 2>&1 &
daemon_pids+=($!)
state=""
for _ in $(seq 120); do
    state=$(sinfo -h -N -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 0.5
done
[[ $state == idle ]] || die "node not idle after 60 s (state '$state'); see $work/log"
log "cluster up: slurmctld :$ctld_port, slurmd :$slurmd_port, node localhost idle ($work)"

# --- 3. project directory and data ------------------------------------------------------------------------------------
proj=$work/proj
ln -s "$repo/conf" "$proj/conf"
log "generating the tiny synthetic data set"
(cd "$proj" && "$venv/bin/fasvlm" synth --out data/synthetic --preset tiny >"$work/log/synth.out" 2>&1) ||
    die "fasvlm synth failed: $(tail -n 20 "$work/log/synth.out")"

export PATH=$venv/bin:$PATH HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false OMP_NUM_THREADS=1
# The tiny set: 24 source images, a third of the subjects held out for source validation -> 12 training images,
# 6 per rank, batch 2: 3 steps per epoch; max_epochs -1 so that max_steps alone ends training. The CLI's defaults
# write checkpoints/last.ckpt at the end of every epoch and best.ckpt on source validation.
fit_args=(--config conf/baseline/tiny.yaml --config conf/strategy/ddp_cpu.yaml
          --data.init_args.batch_size 2 --data.init_args.num_workers 0 --data.init_args.val_fraction 0.34
          --trainer.max_epochs -1 --trainer.log_every_n_steps 1)

job_field() {  # job_field JOBID FIELD -> value from `scontrol show job -o`
    scontrol show job -o "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n1
}

wait_job() {  # wait_job JOBID -> returns when the job reached a final state (not requeued)
    local id=$1 deadline=$((SECONDS + job_timeout)) st
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

submit() {  # submit NAME ARGS... -> job id
    local name=$1; shift
    sbatch --parsable --job-name="$name" --output="$work/logs/%x-%j.out" --chdir="$proj" \
        "$repo/conf/slurm/cpu_gloo.sbatch" "$@"
}

# a. train and test to completion
steps_a=12
t0=$SECONDS
id_a=$(submit fasvlm-train "${fit_args[@]}" --trainer.max_steps "$steps_a")
log "job $id_a (fasvlm-train): fit max_steps=$steps_a, then test; waiting"
st=$(wait_job "$id_a")
exit_a=$(job_field "$id_a" ExitCode)
log "job $id_a: $st, exit code $exit_a, $((SECONDS - t0)) s"
[[ $st == COMPLETED && $exit_a == 0:0 ]] || die "job $id_a ended $st with exit code $exit_a ($work/logs)"
"$py" "$here/check_run.py" train "$proj/runs/baseline-tiny/fasvlm-train" --max-steps "$steps_a" || die "train job checks"

# b. SIGUSR1 mid-training -> hpc checkpoint -> requeue -> resume -> same final step
steps_b=30
t0=$SECONDS
run_b=$proj/runs/baseline-tiny/fasvlm-requeue  # runs/<method>-<protocol>/<job name> (FASVLM_RUN_NAME)
export FASVLM_TEST=0  # fit only: job a already covered `fasvlm test` under SLURM
id_b=$(submit fasvlm-requeue "${fit_args[@]}" --trainer.max_steps "$steps_b")
log "job $id_b (fasvlm-requeue): fit max_steps=$steps_b; signalling once last.ckpt exists"
deadline=$((SECONDS + job_timeout))
until [[ -f $run_b/checkpoints/last.ckpt ]]; do
    st=$(job_field "$id_b" JobState)
    [[ $st == PENDING || $st == RUNNING || $st == CONFIGURING ]] || die "job $id_b is $st before training started"
    ((SECONDS < deadline)) || die "no checkpoint from job $id_b after ${job_timeout} s"
    sleep 0.5
done
log "job $id_b: training under way (last.ckpt written); scancel --signal=USR1 $id_b"
scancel --signal=USR1 "$id_b"
for _ in $(seq 120); do
    restarts=$(job_field "$id_b" Restarts)
    [[ ${restarts:-0} -ge 1 ]] && break
    sleep 0.5
done
[[ ${restarts:-0} -ge 1 ]] || die "job $id_b was not requeued within 60 s of SIGUSR1 (state $(job_field "$id_b" JobState))"
log "job $id_b requeued (Restarts=$restarts, state $(job_field "$id_b" JobState))"
# slurmctld makes a requeued batch job eligible again only ~2 minutes later (PENDING, Reason=BeginTime; observed with
# 22.05: EligibleTime = requeue + 121 s). A real cluster waits that long too; the test starts it at once.
for _ in $(seq 120); do
    st=$(job_field "$id_b" JobState)
    if [[ $st == PENDING ]]; then
        log "job $id_b pending (reason $(job_field "$id_b" Reason), eligible $(job_field "$id_b" EligibleTime));" \
            "scontrol update JobId=$id_b StartTime=now"
        scontrol update JobId="$id_b" StartTime=now
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
"$py" "$here/check_run.py" requeue "$run_b" --max-steps "$steps_b" --log "$work/logs/fasvlm-requeue-$id_b.out" ||
    die "requeue job checks"
log "PASS: train+test job and SIGUSR1 -> requeue -> resume job"
unset FASVLM_TEST

# --- issue 14: scancel (SIGTERM) -> resumable checkpoint -> resubmission; concurrent jobs -> separate run dirs ---------

check_sigterm_resubmit() {  # c. scancel a running job; the same job name submitted again finishes the run
    local steps=30 name=fasvlm-sigterm id st code t0=$SECONDS
    local run=$proj/runs/baseline-tiny/$name
    id=$(submit "$name" "${fit_args[@]}" --trainer.max_steps "$steps")
    log "job $id ($name): fit max_steps=$steps then test; scancel (SIGTERM) once last.ckpt exists"
    local deadline=$((SECONDS + job_timeout))
    until [[ -f $run/checkpoints/last.ckpt ]]; do
        st=$(job_field "$id" JobState)
        [[ $st == PENDING || $st == RUNNING || $st == CONFIGURING ]] || die "job $id is $st before training started"
        ((SECONDS < deadline)) || die "no checkpoint from job $id after ${job_timeout} s"
        sleep 0.5
    done
    sleep 2  # a few more steps
    scancel "$id"
    st=$(wait_job "$id")
    log "job $id: $st after scancel ($((SECONDS - t0)) s)"
    [[ $st == CANCELLED ]] || die "job $id ended $st after scancel, expected CANCELLED"
    local out=$work/logs/$name-$id.out
    grep -q "SIGTERM: saved" "$out" || die "no SIGTERM checkpoint message in $out"
    grep -q "fit ended with exit code" "$out" || die "the sbatch script did not report fit's exit code ($out)"
    [[ ! -f $run/test_metrics.json ]] || die "the sbatch script ran test after an interrupted fit"
    local step
    step=$("$py" "$here/check_run.py" step "$run/checkpoints/last.ckpt") || die "last.ckpt of job $id is unreadable"
    ((step > 0 && step < steps)) || die "last.ckpt after scancel holds step $step, expected 0 < step < $steps"
    log "job $id: resumable last.ckpt at step $step, no test run; resubmitting $name"
    id=$(submit "$name" "${fit_args[@]}" --trainer.max_steps "$steps")
    st=$(wait_job "$id")
    code=$(job_field "$id" ExitCode)
    [[ $st == COMPLETED && $code == 0:0 ]] || die "resubmitted job $id ended $st with exit code $code"
    grep -q "resuming from $run/checkpoints/last.ckpt\|resuming from runs/baseline-tiny/$name/checkpoints/last.ckpt" \
        "$work/logs/$name-$id.out" || die "the resubmitted job did not resume last.ckpt"
    step=$("$py" "$here/check_run.py" step "$run/checkpoints/last.ckpt")
    ((step == steps)) || die "after the resubmission last.ckpt holds step $step, expected $steps"
    [[ -f $run/test_metrics.json ]] || die "no test after the finished fit"
    log "PASS: scancel -> last.ckpt at step $((step)) of $steps after resubmission, tested ($((SECONDS - t0)) s)"
}

check_concurrent_jobs() {  # d. two jobs at once (one task each) write to two run directories
    local steps=6 t0=$SECONDS ids=() both=0 st1 st2
    export FASVLM_TEST=0
    for name in fasvlm-conc1 fasvlm-conc2; do
        ids+=("$(sbatch --parsable --job-name="$name" --ntasks-per-node=1 --output="$work/logs/%x-%j.out" \
            --chdir="$proj" "$repo/conf/slurm/cpu_gloo.sbatch" "${fit_args[@]}" --trainer.max_steps "$steps")")
    done
    log "jobs ${ids[*]}: two concurrent one-task fits (max_steps=$steps)"
    local deadline=$((SECONDS + job_timeout))
    while ((SECONDS < deadline)); do
        st1=$(job_field "${ids[0]}" JobState); st2=$(job_field "${ids[1]}" JobState)
        [[ $st1 == RUNNING && $st2 == RUNNING ]] && both=1
        [[ $st1 != PENDING && $st1 != RUNNING && $st1 != CONFIGURING && $st2 != PENDING && $st2 != RUNNING &&
           $st2 != CONFIGURING ]] && break
        sleep 0.5
    done
    unset FASVLM_TEST
    ((both)) || die "jobs ${ids[*]} never ran at the same time"
    for i in 0 1; do
        local id=${ids[i]} run=$proj/runs/baseline-tiny/fasvlm-conc$((i + 1)) code
        code=$(job_field "$id" ExitCode)
        [[ $(job_field "$id" JobState) == COMPLETED && $code == 0:0 ]] || die "job $id ended with exit code $code"
        [[ $("$py" "$here/check_run.py" step "$run/checkpoints/last.ckpt") == "$steps" ]] || die "$run: last.ckpt"
    done
    log "PASS: concurrent jobs ran at once into runs/baseline-tiny/fasvlm-conc1 and .../fasvlm-conc2 ($((SECONDS - t0)) s)"
}

check_sigterm_resubmit
check_concurrent_jobs

# e. `fasvlm sweep --slurm`: 3 seeds as a 3-task job array written from conf/slurm/cpu_gloo.sbatch (issue 18). Each
#    task trains one epoch and tests in its own run directory <sweep>/seed<k>; then every run has test_metrics.json
#    and run_info.json with its seed, and a second `fasvlm sweep --submit` of the same plan finds nothing to do.
sweep_array_check() {
    local out=runs/sweep-array t0=$SECONDS id k st code pending
    local sweep_args=(--config conf/baseline/tiny.yaml --config conf/strategy/ddp_cpu.yaml
                      --data.init_args.batch_size 2 --data.init_args.num_workers 0 --data.init_args.val_fraction 0.34
                      --trainer.max_epochs 1 --trainer.log_every_n_steps 1
                      --seeds 0-2 --out "$out" --slurm "$repo/conf/slurm/cpu_gloo.sbatch" --submit)
    (cd "$proj" && env -u FASVLM_TEST "$venv/bin/fasvlm" sweep "${sweep_args[@]}") >"$work/log/sweep.out" 2>&1 ||
        die "fasvlm sweep --submit failed: $(tail -n 20 "$work/log/sweep.out")"
    id=$(sed -n 's/^submitted array job //p' "$work/log/sweep.out")
    [[ $id =~ ^[0-9]+$ ]] || die "no array job id in: $(cat "$work/log/sweep.out")"
    log "array job $id (fasvlm sweep, 3 tasks): waiting"
    local deadline=$((SECONDS + 3 * job_timeout))
    while [[ -n $(squeue -h -j "$id" -o %i 2>/dev/null) ]]; do
        ((SECONDS < deadline)) || die "array job $id still running after $((3 * job_timeout)) s"
        sleep 2
    done
    for k in 0 1 2; do
        st=$(job_field "${id}_$k" JobState)
        code=$(job_field "${id}_$k" ExitCode)
        if [[ $st != COMPLETED || $code != 0:0 ]]; then
            for f in "$proj/$out"/logs/*.out; do [[ -f $f ]] && { echo "===== tail $f"; tail -n 40 "$f"; }; done
            die "array task ${id}_$k ended $st with exit code $code"
        fi
    done
    "$py" - "$proj/$out" <<'PYEOF' || die "sweep run checks"
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for k in range(3):
    run = out / f"seed{k}"
    report = json.loads((run / "test_metrics.json").read_text())
    info = json.loads((run / "run_info.json").read_text())
    assert info["seed"] == k and info["world_size"] == 2, (run, info["seed"], info["world_size"])
    assert report["world_size"] == 2 and report["domains"], run
    print(f"  ok    {run}: test_metrics.json ({len(report['domains'])} domains), run_info.json seed {k}, 2 ranks")
PYEOF
    (cd "$proj" && "$venv/bin/fasvlm" sweep "${sweep_args[@]/--submit/--dry-run}") >"$work/log/sweep2.out" 2>&1 ||
        die "fasvlm sweep --dry-run failed: $(tail -n 20 "$work/log/sweep2.out")"
    pending=$(grep -c "(to run)" "$work/log/sweep2.out" || true)
    [[ $pending == 0 ]] || die "after the array, $pending run(s) still to run: $(cat "$work/log/sweep2.out")"
    log "PASS: fasvlm sweep array job $id: 3 tasks, 3 finished runs, $((SECONDS - t0)) s"
}
sweep_array_check
