"""Vision models: what a preset is (`preset`), the registry (`registry`), the industry presets
(`presets`, registered on import), our YOLO-style detector (`detector`), timm/torchvision
classifiers by name (`zoo`) and weight files (`weights`).

May import: kernels.vision, kernels.common, models.errors.
"""
