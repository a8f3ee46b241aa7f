"""Training and evaluation engine: checkpoints, the resumable sampler, the trainer, evaluation, TensorBoard.

Everything here takes plain objects (a model, an optimizer, datasets); ``scripts/`` maps Hydra configs onto it.
"""
