"""Public weights in and out: timm, HuggingFace and official MAE checkpoints.

The common form is the official MAE layout, which is timm's `VisionTransformer` naming plus
MAE's decoder keys (`decoder_*`, `mask_token`): vitmae's own encoder uses those names, so
timm and MAE files need no renaming and HuggingFace files one key map (`hf.py`). `read_source`
detects a file's format from its keys, `infer_arch` reads the architecture from the weights,
`adapt.py` fits a state to another patch size or channel count, `export.py` writes the three
formats back out. Nothing here imports the config, the data or the engine.
"""

from vitmae.weights.source import Source, read_source

__all__ = ["Source", "read_source"]
