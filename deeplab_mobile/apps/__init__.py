"""The command-line apps behind ``scripts/``: each maps a composed Hydra config onto the package's objects.

With ``deeplab_mobile.ablation`` (which reads Hydra sweep folders), this is the only part of the package that
imports Hydra; models, data, engine, deploy and the counters take plain arguments.
"""
