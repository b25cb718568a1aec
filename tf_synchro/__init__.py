"""tf_synchro: self-supervised multi-view synchronization learning for 3D human pose."""
from tfrecords_tools.runtime import quiet_tf as _quiet_tf

_quiet_tf.install_for_binary()  # Before a binary imports TensorFlow (see quiet_tf).
