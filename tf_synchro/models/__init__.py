"""Keras 3 models (keras.ops / keras.layers only, so they also run on JAX)."""
