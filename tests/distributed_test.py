"""Synchronized batch norm: 2 replicas == 1 replica on the same global batch.

conftest.py splits the CPU into two logical devices before TF starts.
"""

import numpy as np
import pytest
import tensorflow as tf

from spade_tf.models.generator import SPADEGenerator
from tests.test_case import copy_weights, two_cpu_strategy

GLOBAL_BATCH = 4


def _generator(norm):
    return SPADEGenerator(
        semantic_channels=5,
        base_filters=4,
        crop_size=32,
        spade=dict(hidden_filters=8, param_free_norm=norm),
    )


def _bn_state(g):
    # Keyed by the path below the model's own (uniquified) name.
    return {
        v.path.split("/", 1)[1]: v.numpy()
        for v in g.weights
        if "running" in v.path or v.path.endswith(("/u", "/v"))
    }


def _run_two_replicas(reference, norm, semantics):
    strategy = two_cpu_strategy()
    with strategy.scope():
        g = _generator(norm)
        g.build()
    copy_weights(reference, g)
    per_replica = GLOBAL_BATCH // 2
    dist = strategy.experimental_distribute_values_from_function(
        lambda ctx: semantics[ctx.replica_id_in_sync_group * per_replica :][:per_replica]
    )

    @tf.function
    def step(x):
        return strategy.run(lambda s: g(s, training=True), args=(x,))

    out = strategy.experimental_local_results(step(dist))
    return np.concatenate([o.numpy() for o in out]), g


@pytest.fixture(scope="module")
def semantics():
    labels = tf.random.stateless_uniform([GLOBAL_BATCH, 32, 32], [3, 4], 0, 5, tf.int32)
    # Give the two halves different statistics so that local BN would differ.
    labels = tf.concat([labels[:2], tf.minimum(labels[2:], 1)], 0)
    return tf.one_hot(labels, 5)


def test_sync_batch_norm_two_replicas_equal_one(semantics):
    reference = _generator("sync_batch")
    reference.build()
    # Larger modulation weights than the 0.02-gain init so BN statistics matter.
    reference.set_weights([w * 50 if w.ndim == 4 else w for w in reference.get_weights()])
    before = _bn_state(reference)
    two, g2 = _run_two_replicas(reference, "sync_batch", semantics)
    one = reference(semantics, training=True).numpy()
    np.testing.assert_allclose(two, one, atol=1e-5)
    after_one, after_two = _bn_state(reference), _bn_state(g2)
    assert after_one.keys() == after_two.keys() and len(after_one) > 0
    moved = 0
    for path, value in after_one.items():
        np.testing.assert_allclose(after_two[path], value, atol=1e-5, rtol=1e-5, err_msg=path)
        moved += not np.allclose(value, before[path])
    assert moved == len(after_one)


def test_unsynchronized_batch_norm_differs(semantics):
    # The control: per-replica statistics give a different result, so the test above can fail.
    reference = _generator("batch")
    reference.build()
    reference.set_weights([w * 50 if w.ndim == 4 else w for w in reference.get_weights()])
    two, _ = _run_two_replicas(reference, "batch", semantics)
    one = reference(semantics, training=True).numpy()
    assert np.abs(two - one).max() > 1e-3
