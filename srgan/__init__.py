"""The science, in pure PyTorch: the papers' generators and discriminators, losses, versions (presets and sizes),
images, the MATLAB resize, data, the training engine and its step, checkpoints and upscaling. Imports no other layer."""
