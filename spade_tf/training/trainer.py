"""SPADE training: strategy, models, optimisers, the G and D steps, checkpoints and summaries.

One iteration is the official one (reference section 6): a generator step
(G, and E with a VAE) then a discriminator step on the same batch, each with
its own tape and explicit variable list. D sees fake and real in one batch,
fake first. Losses are per-replica means rescaled by local/global batch, so
that the gradients Keras sums over replicas are those of the global-batch mean
(the KL term is a sum over the batch, as in the official code, and is not
rescaled).
"""

import dataclasses
import json
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from spade_tf.data.semantics import make_semantics, semantic_channels
from spade_tf.models import losses
from spade_tf.models.discriminator import MultiscaleDiscriminator
from spade_tf.models.encoder import ConvEncoder
from spade_tf.models.generator import SPADEGenerator


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is kept."""


@keras.saving.register_keras_serializable(package="spade_tf")
class OfficialLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Constant for `num_epochs`, then linear decay to 0 over `num_decay_epochs`, per epoch.

    The official trainer updates the rate at the end of each epoch: during
    (0-based) epoch e the rate is lr * (1 - max(0, e - niter) / niter_decay).
    """

    def __init__(self, lr, steps_per_epoch, num_epochs, num_decay_epochs):
        self.lr = float(lr)
        self.steps_per_epoch = int(steps_per_epoch)
        self.num_epochs = int(num_epochs)
        self.num_decay_epochs = int(num_decay_epochs)

    def __call__(self, step):
        if self.num_decay_epochs <= 0:
            return tf.constant(self.lr, tf.float32)
        epoch = tf.cast(step // self.steps_per_epoch, tf.float32)
        frac = tf.maximum(0.0, epoch - self.num_epochs) / self.num_decay_epochs
        return self.lr * tf.maximum(0.0, 1.0 - frac)

    def get_config(self):
        return dict(
            lr=self.lr,
            steps_per_epoch=self.steps_per_epoch,
            num_epochs=self.num_epochs,
            num_decay_epochs=self.num_decay_epochs,
        )


def make_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG lists several workers, else MirroredStrategy.

    MirroredStrategy spans every visible GPU, or the CPU when there is none.
    """
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if len(tf_config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or ["/cpu:0"]
    return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    return resolver.task_type == "chief" or (resolver.task_type == "worker" and resolver.task_id == 0)


def build_models(config):
    """(G, D, E or None) from `config.model` and the data's channel counts."""
    data, m = config.data, config.model
    sem_nc = semantic_channels(data.num_classes, data.contain_dontcare_label, data.use_instance_map)
    dtype = config.train.precision
    g = SPADEGenerator(
        semantic_channels=sem_nc,
        base_filters=m.base_filters,
        num_upsampling_layers=m.num_upsampling_layers,
        crop_size=data.crop_size,
        aspect_ratio=data.aspect_ratio,
        use_vae=m.use_vae,
        latent_dim=m.latent_dim,
        param_free_norm=m.param_free_norm,
        use_spectral_norm=m.use_spectral_norm,
        spade_kernel_size=m.spade_kernel_size,
        spade_hidden_filters=m.spade_hidden_filters,
        # .get: configs written before these options existed.
        fast=m.get("fast_spade", True),
        gather_impl=m.get("spade_gather_impl", "xla"),
        dtype=dtype,
        name="generator",
    )
    d = MultiscaleDiscriminator(
        input_filters=sem_nc + 3,
        base_filters=m.disc_filters,
        num_scales=m.disc_scales,
        num_layers=m.disc_layers,
        use_spectral_norm=m.use_spectral_norm,
        dtype=dtype,
        name="discriminator",
    )
    e = None
    if m.use_vae:
        e = ConvEncoder(
            base_filters=m.base_filters,
            latent_dim=m.latent_dim,
            image_size=m.encoder_image_size,
            use_spectral_norm=m.use_spectral_norm,
            dtype=dtype,
            name="encoder",
        )
    for model in (g, d, e):
        if model is not None:
            model.build()
    return g, d, e


def make_optimizers(config, steps_per_epoch):
    t = config.train
    if t.ttur:
        g_lr, d_lr, betas = t.lr / 2, t.lr * 2, (0.0, 0.9)
    else:
        g_lr, d_lr, betas = t.lr, t.lr, (0.5, 0.999)
    opts = []
    for lr, per_epoch in ((g_lr, max(1, steps_per_epoch // t.d_steps_per_g)), (d_lr, steps_per_epoch)):
        schedule = OfficialLinearDecay(lr, per_epoch, t.num_epochs, t.num_decay_epochs)
        # PyTorch's Adam epsilon (Keras defaults to 1e-7).
        opt = keras.optimizers.Adam(schedule, beta_1=betas[0], beta_2=betas[1], epsilon=1e-8)
        if t.precision == "mixed_float16":
            opt = keras.optimizers.LossScaleOptimizer(opt)
        opts.append(opt)
    return opts


@dataclasses.dataclass
class StepLogs:
    values: dict

    def finite(self):
        return all(np.isfinite(v) for v in self.values.values())


class GANTrainer:
    """Owns the models, optimisers and the distributed G/D steps.

    Args:
        config: the full ConfigDict (see spade_tf.training.config).
        strategy: a tf.distribute strategy; models and optimisers are created in its scope.
        steps_per_epoch: optimiser schedule granularity (the official per-epoch decay).
        vgg_loss: an optional losses.VGGPerceptualLoss.
    """

    def __init__(self, config, strategy, steps_per_epoch, vgg_loss=None):
        self.config = config
        self.strategy = strategy
        self.global_batch = int(config.train.batch_size)
        self.label_channels = config.data.num_classes + int(config.data.contain_dontcare_label)
        self.use_instance = bool(config.data.use_instance_map)
        self.vgg_loss = vgg_loss
        t = config.train
        with strategy.scope():
            self.generator, self.discriminator, self.encoder = build_models(config)
            self.g_optimizer, self.d_optimizer = make_optimizers(config, steps_per_epoch)
            self.g_vars = list(self.generator.trainable_variables)
            if self.encoder is not None:
                self.g_vars += list(self.encoder.trainable_variables)
            self.d_vars = list(self.discriminator.trainable_variables)
            # Build eagerly inside the scope: a lazy build inside the distributed
            # tf.function fails, and one outside the scope gives unmirrored slots.
            self.g_optimizer.build(self.g_vars)
            self.d_optimizer.build(self.d_vars)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.lambdas = (t.lambda_feat if t.use_feat_loss else 0.0, t.lambda_kld)
        self.seed = int(config.seed)
        replica_g = self._g_replica_step
        replica_d = self._d_replica_step
        if t.xla:
            replica_g = tf.function(replica_g, jit_compile=True)
            replica_d = tf.function(replica_d, jit_compile=True)
        self._replica_g, self._replica_d = replica_g, replica_d
        self._train_fns = {}

    # ------------------------------------------------------------------ pieces

    def semantics(self, batch):
        instances = batch["instance"] if self.use_instance else None
        return make_semantics(batch["label"], self.label_channels, instances)

    def _noise(self, index, salt):
        # Per-example noise from the example's stream position: independent of
        # how the batch is split over replicas, and reproduced on resume.
        dim = self.config.model.latent_dim

        def one(p):
            return tf.random.stateless_normal([dim], seed=tf.stack([self.seed * 2 + salt, p]))

        noise = tf.map_fn(one, tf.cast(index, tf.int64), fn_output_signature=tf.float32)
        return tf.cast(noise, self.generator.variable_dtype)

    def _encode_z(self, batch, real, salt):
        mu, logvar = self.encoder(real, training=True)
        return mu + self._noise(batch["index"], salt) * tf.exp(0.5 * logvar), mu, logvar

    def _discriminate(self, semantics, fake, real):
        semantics, real = tf.cast(semantics, fake.dtype), tf.cast(real, fake.dtype)
        pair = tf.concat([tf.concat([semantics, fake], -1), tf.concat([semantics, real], -1)], 0)
        outputs = self.discriminator(pair, training=True)
        fake_out = [[tf.split(t, 2)[0] for t in scale] for scale in outputs]
        real_out = [[tf.split(t, 2)[1] for t in scale] for scale in outputs]
        return fake_out, real_out

    def _batch_weight(self, real):
        dtype = tf.float64 if self.config.train.precision == "float64" else tf.float32
        return tf.cast(tf.shape(real)[0], dtype) / float(self.global_batch)

    def _g_replica_step(self, batch):
        semantics, real = self.semantics(batch), batch["image"]
        weight = self._batch_weight(real)
        lambda_feat, lambda_kld = self.lambdas
        with tf.GradientTape() as tape:
            z, kl = None, None
            if self.encoder is not None:
                z, mu, logvar = self._encode_z(batch, real, salt=0)
                kl = losses.kl_divergence_loss(mu, logvar, lambda_kld)
            fake = self.generator(semantics, z, training=True, one_hot=True)
            fake_out, real_out = self._discriminate(semantics, fake, real)
            gan = losses.generator_hinge_loss(fake_out)
            zero = tf.zeros_like(gan)
            kld = zero if kl is None else kl
            feat = losses.feature_matching_loss(fake_out, real_out, lambda_feat) if lambda_feat else zero
            vgg = tf.cast(self.vgg_loss(fake, real), gan.dtype) if self.vgg_loss is not None else zero
            loss = (gan + feat + vgg) * weight + kld
            scaled = self.g_optimizer.scale_loss(loss) if hasattr(self.g_optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.g_vars)
        self.g_optimizer.apply_gradients(zip(grads, self.g_vars))
        return {"G_GAN": gan, "G_Feat": feat, "G_VGG": vgg, "G_KLD": kld}

    def _d_replica_step(self, batch):
        semantics, real = self.semantics(batch), batch["image"]
        weight = self._batch_weight(real)
        z = None
        if self.encoder is not None:
            # As the official D step: a fresh z, and G (and E) in train mode,
            # so their batch statistics and power iterations advance again.
            z, _, _ = self._encode_z(batch, real, salt=1)
        fake = tf.stop_gradient(self.generator(semantics, z, training=True, one_hot=True))
        with tf.GradientTape() as tape:
            fake_out, real_out = self._discriminate(semantics, fake, real)
            d_fake, d_real = losses.discriminator_hinge_loss(fake_out, real_out)
            loss = (d_fake + d_real) * weight
            scaled = self.d_optimizer.scale_loss(loss) if hasattr(self.d_optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.d_vars)
        self.d_optimizer.apply_gradients(zip(grads, self.d_vars))
        return {"D_Fake": d_fake, "D_real": d_real}

    def _reduce(self, logs):
        out = {}
        for k, v in logs.items():
            # The KL term is a batch sum: replicas add up; the others are means.
            op = tf.distribute.ReduceOp.SUM if k == "G_KLD" else tf.distribute.ReduceOp.MEAN
            out[k] = self.strategy.reduce(op, v, axis=None)
        return out

    def _distributed(self, name):
        # The G and D steps are separate tf.functions: inside one function the
        # replicas may run the two steps' gradient all-reduces in different
        # orders, and the collectives then pair up mismatched tensors.
        if name not in self._train_fns:
            replica_fn = self._replica_g if name == "G" else self._replica_d

            @tf.function
            def step(dist_batch):
                return self._reduce(self.strategy.run(replica_fn, args=(dist_batch,)))

            self._train_fns[name] = step
        return self._train_fns[name]

    def train_step(self, dist_batch):
        """One iteration (G step when due, then D step); returns the reduced losses as floats."""
        logs = {}
        if int(self.step.numpy()) % self.config.train.d_steps_per_g == 0:
            logs.update(self._distributed("G")(dist_batch))
        logs.update(self._distributed("D")(dist_batch))
        self.step.assign_add(1)
        return StepLogs({k: float(v) for k, v in logs.items()})

    def synthesize(self, batch, seed=0):
        """Eval-mode images for a (non-distributed) batch; with a VAE, z from E on the real image."""
        semantics = self.semantics(batch)
        z = None
        if self.encoder is not None:
            mu, logvar = self.encoder(batch["image"], training=False)
            eps = tf.random.stateless_normal(tf.shape(mu), seed=[seed, 0])
            z = mu + eps * tf.exp(0.5 * logvar)
        return self.generator(semantics, z, training=False, one_hot=True)

    def checkpoint(self):
        """The training state as one tf.train.Checkpoint.

        Variables are listed explicitly, by path: TF's checkpoint tracking does
        not follow Keras 3's wrapped lists of sublayers (the discriminator's
        scales and layers), and would silently leave their spectral-norm
        vectors out of the checkpoint.
        """

        def by_path(model):
            return {v.path.replace("/", "."): v for v in model.weights}

        items = dict(
            generator=by_path(self.generator),
            discriminator=by_path(self.discriminator),
            g_optimizer={f"{i:05d}": v for i, v in enumerate(self.g_optimizer.variables)},
            d_optimizer={f"{i:05d}": v for i, v in enumerate(self.d_optimizer.variables)},
            step=self.step,
        )
        if self.encoder is not None:
            items["encoder"] = by_path(self.encoder)
        return tf.train.Checkpoint(**items)

    def load_pretrained(self, bundle_path):
        """Fine-tuning: copies weights from a converted official bundle (same architecture)."""
        from spade_tf.models.bundle import load_bundle

        bundle = load_bundle(bundle_path)
        pairs = [("generator", self.generator, bundle.generator)]
        pairs.append(("discriminator", self.discriminator, bundle.discriminator))
        pairs.append(("encoder", self.encoder, bundle.encoder))
        loaded = []
        for name, ours, theirs in pairs:
            if ours is None or theirs is None:
                continue
            mine, other = ours.get_weights(), theirs.get_weights()
            mismatch = [
                (v.path, a.shape, b.shape) for v, a, b in zip(ours.weights, mine, other) if a.shape != b.shape
            ]
            if len(mine) != len(other) or mismatch:
                detail = (
                    f"first mismatch {mismatch[0][0]}: config {mismatch[0][1]}, file {mismatch[0][2]}"
                    if mismatch
                    else f"{len(mine)} weights in the config's model, {len(other)} in the file"
                )
                raise ValueError(
                    f"{bundle_path}: its {name} does not match the config ({detail}). Use the config of the "
                    "checkpoint's dataset (label count, ngf, num_upsampling_layers, use_vae)."
                )
            ours.set_weights(other)
            loaded.append(name)
        return loaded


def clean_worker_dir(path):
    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
