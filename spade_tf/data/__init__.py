"""Datasets: the label map (`labels`), layouts on disk, checks, preprocessing transforms, tf.data pipelines,
the demo dataset."""
