"""Diffusion source priors and unsupervised separation with them (seeds/001).

* :mod:`~espnet2_ext.diffusion.schedule` — DDPM (VP) schedule, respaced reverse process;
* :mod:`~espnet2_ext.diffusion.tf_unet` — the time-frequency attention U-Net (the prior
  network), behind :mod:`~espnet2_ext.diffusion.abs_prior_network`;
* :mod:`~espnet2_ext.diffusion.prior_model` — the ESPnet model (DDPM loss, EMA weights
  from :mod:`~espnet2_ext.diffusion.ema`) and the frozen denoiser used for sampling;
* :mod:`~espnet2_ext.diffusion.preprocessor` — crops, levels and labels of training audio;
* :mod:`~espnet2_ext.diffusion.sampling` — the separation sampler: reconstruction loss,
  step rules (the paper's and the baselines), initialisations, the sampler;
* :mod:`~espnet2_ext.diffusion.loading` — trained priors and samplers from their files;
* :mod:`~espnet2_ext.diffusion.evaluation` — SI-SNR with permutation search, and scoring
  separated scp lists.

The ESPnet task that trains a prior is :mod:`espnet2_ext.tasks.diffusion`; separating
with trained priors from Python or over an scp list is
:mod:`espnet2_ext.separation.diffusion`.

Importing this package imports nothing heavy; import the modules you need.
"""
