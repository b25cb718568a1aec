"""The two learning tasks: synchronisation pre-training (pretext) and 3D pose (pose3d),
with their losses and metrics."""
