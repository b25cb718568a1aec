"""Writers, readers and tools for tf_synchro's multi-view TFRecord datasets."""
from tfrecords_tools.runtime import quiet_tf as _quiet_tf

_quiet_tf.install_for_binary()  # Before a binary imports TensorFlow (see quiet_tf).
