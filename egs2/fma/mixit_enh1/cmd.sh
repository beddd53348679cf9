# How the heavy jobs run: segmenting, statistics, training, inference and scoring all go
# through one of the runners below, with the interface of Kaldi's and ESPnet's
# run.pl/slurm.pl:  <cmd> [--gpu N] [--mem M] [--time T] [--num_threads N]
#                         [--num_nodes N] [--max_jobs_run N] [JOB=1:N] LOG COMMAND ...
#   train_cmd   CPU jobs: segmenting, statistics (the driver adds nothing)
#   cuda_cmd    training (the driver adds --gpu <ngpu> and, multi-node, --num_nodes)
#               and GPU inference (--gpu_inference true: --gpu 1)
#   decode_cmd  CPU inference and scoring
# The backend: "local" (this machine, utils/run_local.sh) or "slurm" (utils/slurm.sh:
# sbatch, each option translated by conf/slurm.conf; edit the partitions there). The
# environment variable CMD_BACKEND overrides the choice below for one run:
#   CMD_BACKEND=slurm ./run.sh ...
cmd_backend=${CMD_BACKEND:-local}

case "$cmd_backend" in
  local)
    train_cmd="utils/run_local.sh"
    cuda_cmd="utils/run_local.sh"
    decode_cmd="utils/run_local.sh"
    ;;
  slurm)
    # per-job resources (sbatch options through conf/slurm.conf); a training job that
    # outlives its --time limit is resumed by running the stage again (--resume true)
    train_cmd="utils/slurm.sh --mem 16G --time 4:00:00 --num_threads 8"
    cuda_cmd="utils/slurm.sh --mem 64G --time 48:00:00 --num_threads 8"
    decode_cmd="utils/slurm.sh --mem 16G --time 4:00:00 --num_threads 4"
    ;;
  *)
    echo "cmd.sh: unknown cmd_backend '$cmd_backend' (local or slurm)" >&2
    return 1
    ;;
esac
