#!/usr/bin/env bash
# Launch N ranks on this machine: mpirun_local.sh -np N <program> [args...]
# Adds what the common local cases need and nothing else:
#   --allow-run-as-root   when running as root (containers);
#   --oversubscribe       with shared-memory transport and no CMA single-copy (often
#                         refused in containers), for any N;
#   --bind-to none        always: ranks are not pinned (the OS and OpenMP place them);
#   OMP_NUM_THREADS       cores / N (at least 1) unless already set, so N ranks do not
#                         start N x cores OpenMP threads.
# Extra mpirun flags go in MPIRUN_FLAGS, e.g. MPIRUN_FLAGS="--tag-output".
set -euo pipefail
if [ $# -lt 3 ] || [ "$1" != "-np" ]; then
  echo "usage: $0 -np N <program> [args...]" >&2
  exit 2
fi
np=$2
shift 2
cores=$(nproc)
flags=(--bind-to none)
[ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
# Always: Open MPI counts physical cores as slots (a 2-vCPU cloud host may have one),
# and the CMA single-copy path is refused in many containers.
flags+=(--oversubscribe --mca btl self,vader --mca btl_vader_single_copy_mechanism none)
threads=${OMP_NUM_THREADS:-$(( cores / np > 0 ? cores / np : 1 ))}
# shellcheck disable=SC2086
exec "${MPIEXEC:-mpirun}" "${flags[@]}" ${MPIRUN_FLAGS:-} -x OMP_NUM_THREADS="$threads" \
     -np "$np" "$@"
