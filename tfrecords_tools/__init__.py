"""Writers, readers and tools for tf_synchro's multi-view TFRecord datasets."""
