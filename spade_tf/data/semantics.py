"""Label maps and instance maps -> the generator's semantic input (NHWC).

The official `Pix2PixModel.preprocess_input`: one-hot label channels (with an
optional don't-care channel), then the instance-edge channel last.
"""

import tensorflow as tf

# The channel counts live with the label map; imported here for `spade_tf.preprocessing.semantic_channels`.
from spade_tf.data.labels import semantic_channels  # noqa: F401


def one_hot_labels(labels, num_channels, dtype=tf.float32):
    """(N, H, W) or (N, H, W, 1) integer ids -> (N, H, W, num_channels) one-hot.

    `num_channels` is label_nc + 1 when a don't-care label exists (the dataset
    maps raw 255 to label_nc). Ids outside [0, num_channels) give an all-zero
    pixel, as `tf.one_hot` defines; validate ids before this (the data
    pipeline and the export signatures do).
    """
    labels = tf.convert_to_tensor(labels)
    if labels.shape.rank == 4:
        labels = tf.squeeze(labels, -1)
    return tf.one_hot(tf.cast(labels, tf.int32), num_channels, dtype=dtype)


def instance_edges(instances, dtype=tf.float32):
    """Instance-boundary map of the official `get_edges`, NHWC.

    A pixel is 1 where its left, right, upper or lower neighbour has a
    different instance id: both sides of every boundary are marked, diagonal
    contacts do not count, image borders are not marked.

    Args:
        instances: (N, H, W) or (N, H, W, 1) integer instance ids.

    Returns:
        (N, H, W, 1) float 0/1 map.
    """
    t = tf.convert_to_tensor(instances)
    if t.shape.rank == 3:
        t = t[..., None]
    dw = tf.not_equal(t[:, :, 1:], t[:, :, :-1])
    dh = tf.not_equal(t[:, 1:], t[:, :-1])
    no_col = tf.zeros_like(dw[:, :, :1])
    no_row = tf.zeros_like(dh[:, :1])
    edge = tf.logical_or(
        tf.logical_or(tf.concat([no_col, dw], 2), tf.concat([dw, no_col], 2)),
        tf.logical_or(tf.concat([no_row, dh], 1), tf.concat([dh, no_row], 1)),
    )
    return tf.cast(edge, dtype)


def make_semantics(labels, num_channels, instances=None, dtype=tf.float32):
    """One-hot labels, then the instance edges as the last channel when given."""
    one_hot = one_hot_labels(labels, num_channels, dtype)
    if instances is None:
        return one_hot
    return tf.concat([one_hot, instance_edges(instances, dtype)], axis=-1)
