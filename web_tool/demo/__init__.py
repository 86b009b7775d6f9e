"""The embedded demo: a synthetic NAIP-like scene, the U-Net trained on it, and its evaluation."""
