"""Training and evaluation engine: checkpoints, the resumable sampler, the trainer, evaluation, TensorBoard,
DDP helpers, and a run's life around the loop (``run``: final stage, resume check, status, SIGTERM).

Everything here takes plain objects (a model, an optimizer, datasets); ``deeplab_mobile.apps`` maps Hydra
configs onto it.
"""
