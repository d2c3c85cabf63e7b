"""vitmae: Masked Autoencoder pretraining and fine-tuning of Vision Transformers.

The subpackages, bottom to top (each imports only from those before it):
    errors, variants, distributed   exceptions, model sizes as data, the process group
    config/    typed config, checks, YAML presets
    models/    ViT, hybrid stem, MAE, segmentation heads, ResNet
    data/      data sets, transforms, loaders, masks' palette, the data audit
    tasks/     what a batch means: pretrain, classify, multilabel, segment, and their metrics
    runs/      the run folder, checkpoint files, record sinks
    weights/   weights in and out: timm, HuggingFace, official MAE, vitmae runs
    infer/     open a trained model, preprocess, predict, embed, attention maps
    viz/       figures, reconstructions, segmentation and attention pictures, the report
    train/     the loop, steps, checkpointer, optimiser, monitors, pretrain/finetune/evaluate
    export/    ONNX and int8
    cli/       the `vitmae` command and the demo

Library entry points (the CLI calls the same functions):
    from vitmae.config import load_config
    from vitmae.train.runner import run_pretrain, run_finetune
    from vitmae.train.evaluation import run_evaluate
    from vitmae.viz.reconstruction import run_visualize
"""

__version__ = "0.1.0"
