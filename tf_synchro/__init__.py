"""tf_synchro: self-supervised multi-view synchronization learning for 3D human pose."""
