"""vitmae: Masked Autoencoder pretraining and fine-tuning of Vision Transformers.

Library entry points (the CLI calls the same functions):
    from vitmae.config import load_config
    from vitmae.runner import run_pretrain, run_finetune
    from vitmae.evaluation import run_evaluate
    from vitmae.visualize import run_visualize
"""

__version__ = "0.1.0"
