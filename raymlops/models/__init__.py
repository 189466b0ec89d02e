"""The models layer: torchvision classifiers adapted to small images, built by name, never with pretrained weights
(small_images.build_model). This file imports nothing: `models.device` is used where torch is not loaded (a
trial's thin driver), and importing the package must not import torch."""
