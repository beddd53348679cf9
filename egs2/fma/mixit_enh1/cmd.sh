# How jobs run. On a workstation: utils/run_local.sh (parallel local processes).
# On a Slurm cluster: utils/run_slurm.sh, with sbatch options in SLURM_OPTS, e.g.
#   train_cmd=utils/run_slurm.sh; export SLURM_OPTS="--partition=cpu --time=4:00:00"
#   cuda_cmd=utils/run_slurm.sh   (and SLURM_OPTS with --gres=gpu:N for training)
train_cmd=utils/run_local.sh
cuda_cmd=utils/run_local.sh
decode_cmd=utils/run_local.sh
