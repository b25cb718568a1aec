"""Shared runtime helpers, the bottom layer: nothing here imports the dataset tools or
tf_synchro (the flag engine: :mod:`tfrecords_tools.runtime.flags`)."""
