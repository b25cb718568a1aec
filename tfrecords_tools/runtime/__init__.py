"""Shared runtime helpers of every binary and library of the project (the bottom layer).

* :mod:`~tfrecords_tools.runtime.cli`: how a binary ends (one line per expected error,
  fixed exit codes), the error classes, SIGTERM, in-process runs (``invoke``);
* :mod:`~tfrecords_tools.runtime.locks`: run-directory locks and temporaries of dead writers;
* :mod:`~tfrecords_tools.runtime.fileio`: atomic JSON, sha256, JSON round trips;
* :mod:`~tfrecords_tools.runtime.figures`: writing a matplotlib figure atomically;
* :mod:`~tfrecords_tools.runtime.progress`: the progress line of long loops;
* :mod:`~tfrecords_tools.runtime.quiet_tf`: TensorFlow's start-up logging kept off stderr;
* :mod:`~tfrecords_tools.runtime.flags`: the flag engine (config dataclass fields -> absl
  flags -> checked configs) of every binary.

Nothing here imports the rest of ``tfrecords_tools`` or ``tf_synchro``
(tests/test_layers.py checks the direction).
"""
