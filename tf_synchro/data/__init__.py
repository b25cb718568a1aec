"""Input pipelines (tf.data) reading tfrecords_tools datasets."""
