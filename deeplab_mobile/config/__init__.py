"""The config layer: Hydra configs -> the package's objects, below the apps and the ablation report, which both use
it and do not import each other (docs/architecture.md).

- ``schema``: every config's types and defaults (dataclasses in Hydra's ConfigStore), the resume identity;
- ``plan``: a training run resolved once, read-only, before anything runs;
- ``loss``: the loss a config's ``loss`` node builds (by ``_target_``), and earlier run folders' loss nodes;
- ``model``: the network a config describes, its class names, the weights a run starts from;
- ``run``: a run's identity, DeepLabv3's final stage, the LR schedule, a run folder loaded back;
- ``evaluation``: the evaluation protocol, and the one evaluation set-up (data, loader, normalisation);
- ``machine``: how parallel sweep jobs share a machine;
- ``paths``: where each app writes (the output-folder rules of the configs).
"""
