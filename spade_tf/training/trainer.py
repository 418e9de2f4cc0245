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

from spade_tf.config import build_models
from spade_tf.data.labels import label_channels
from spade_tf.data.semantics import make_semantics
from spade_tf.models import losses
from spade_tf.models.bundle import load_bundle


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


def make_optimizers(
    lr, ttur, num_epochs, num_decay_epochs, steps_per_epoch, d_steps_per_g=1, loss_scaling=False
):
    """(G optimiser, D optimiser): the official Adam settings and per-epoch schedule.

    Args:
        lr: base learning rate (official `lr`).
        ttur: two time-scale update rule: G lr/2, D 2*lr, betas (0, 0.9); else both lr, betas (0.5, 0.999).
        num_epochs, num_decay_epochs: official niter and niter_decay (see `OfficialLinearDecay`).
        steps_per_epoch: iterations per epoch (G takes one step every `d_steps_per_g` of them).
        d_steps_per_g: D steps per G step.
        loss_scaling: wrap both in a `LossScaleOptimizer` (float16 training).
    """
    if ttur:
        g_lr, d_lr, betas = lr / 2, lr * 2, (0.0, 0.9)
    else:
        g_lr, d_lr, betas = lr, lr, (0.5, 0.999)
    opts = []
    for rate, per_epoch in ((g_lr, max(1, steps_per_epoch // d_steps_per_g)), (d_lr, steps_per_epoch)):
        schedule = OfficialLinearDecay(rate, per_epoch, num_epochs, num_decay_epochs)
        # PyTorch's Adam epsilon (Keras defaults to 1e-7).
        opt = keras.optimizers.Adam(schedule, beta_1=betas[0], beta_2=betas[1], epsilon=1e-8)
        if loss_scaling:
            opt = keras.optimizers.LossScaleOptimizer(opt)
        opts.append(opt)
    return opts


@dataclasses.dataclass
class StepLogs:
    values: dict

    def finite(self):
        return all(np.isfinite(v) for v in self.values.values())


def trainer_from_config(config, strategy, steps_per_epoch, vgg_loss=None):
    """A `GANTrainer` with the networks, optimisers and loss weights of a training config.

    The config's sections become explicit arguments here and nowhere else: the networks from
    `spade_tf.config.build_models`, the optimisers from `config.train`, both in the strategy's scope.
    """
    t, d = config.train, config.data
    with strategy.scope():
        generator, discriminator, encoder = build_models(config)
        g_optimizer, d_optimizer = make_optimizers(
            t.lr,
            t.ttur,
            t.num_epochs,
            t.num_decay_epochs,
            steps_per_epoch,
            t.d_steps_per_g,
            loss_scaling=t.precision == "mixed_float16",
        )
    return GANTrainer(
        generator,
        discriminator,
        encoder,
        g_optimizer,
        d_optimizer,
        strategy,
        global_batch_size=t.batch_size,
        label_channels=label_channels(d.num_classes, d.contain_dontcare_label),
        use_instance_map=d.use_instance_map,
        lambda_feat=t.lambda_feat if t.use_feat_loss else 0.0,
        lambda_kld=t.lambda_kld,
        vgg_loss=vgg_loss,
        seed=config.seed,
        d_steps_per_g=t.d_steps_per_g,
        xla=t.xla,
        ema_decay=t.ema_decay,
        reuse_fakes=t.reuse_fakes,
    )


def is_power_iteration_vector(variable):
    """Whether a variable is a spectral-norm layer's `u` or `v` (unit vectors the power iteration keeps)."""
    return variable.path.rsplit("/", 1)[-1] in ("u", "v") and not variable.trainable


def _copy(model):
    """A second network of the same configuration with the same weights (for the moving average)."""
    copy = type(model).from_config(model.get_config())
    copy.build()
    names = [v.path.split("/", 1)[1] for v in model.weights]
    if [v.path.split("/", 1)[1] for v in copy.weights] != names:
        raise AssertionError(f"the copy of {model.name} has other weights than the original")
    for target, source in zip(copy.weights, model.weights):
        target.assign(source)
    return copy


class GANTrainer:
    """Owns the networks, optimisers and the distributed G/D steps.

    `trainer_from_config` builds one from a training config.

    Args:
        generator, discriminator: the networks, created in `strategy`'s scope.
        encoder: the style encoder (VAE), or None.
        g_optimizer, d_optimizer: their optimisers (G's also updates E), created in the scope.
        strategy: a tf.distribute strategy.
        global_batch_size: examples per step over all replicas; per-replica losses are scaled by
            local / global batch so that the gradients summed over replicas are the global mean's.
        label_channels: one-hot channels of the label ids (classes, + don't-care).
        use_instance_map: batches carry instance maps whose edges are the last semantic channel.
        lambda_feat: feature-matching weight (0: off).
        lambda_kld: KL weight (VAE).
        vgg_loss: an optional losses.VGGPerceptualLoss (its weight included).
        seed: seed of the per-example VAE noise streams.
        d_steps_per_g: D steps per G step.
        xla: compile each replica's step (`jit_compile`).
        ema_decay: > 0 keeps an exponential moving average of G's and E's weights (decay
            min(ema_decay, (1 + n) / (10 + n)) after n G steps, TF's ExponentialMovingAverage
            warm-up), which synthesis, evaluation and the bundle use, as imaginaire and OASIS do;
            0 synthesizes with the trained weights themselves.
        reuse_fakes: the D step after a G step judges that G step's fakes (made before G's update, from
            the G step's z) instead of running E and G again with a fresh z after it, as the official
            code does: the iteration skips one E and G forward (pix2pixHD's order). G's batch statistics
            and E's noise then advance once per iteration, not twice.
    """

    def __init__(
        self,
        generator,
        discriminator,
        encoder,
        g_optimizer,
        d_optimizer,
        strategy,
        global_batch_size,
        label_channels,
        use_instance_map,
        lambda_feat=10.0,
        lambda_kld=0.05,
        vgg_loss=None,
        seed=0,
        d_steps_per_g=1,
        xla=False,
        ema_decay=0.0,
        reuse_fakes=False,
    ):
        self.strategy = strategy
        self.global_batch = int(global_batch_size)
        self.label_channels = int(label_channels)
        self.use_instance = bool(use_instance_map)
        self.vgg_loss = vgg_loss
        self.generator, self.discriminator, self.encoder = generator, discriminator, encoder
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.d_steps_per_g = int(d_steps_per_g)
        self.reuse_fakes = bool(reuse_fakes)
        with strategy.scope():
            self.g_vars = list(self.generator.trainable_variables)
            if self.encoder is not None:
                self.g_vars += list(self.encoder.trainable_variables)
            self.d_vars = list(self.discriminator.trainable_variables)
            # Build eagerly inside the scope: a lazy build inside the distributed
            # tf.function fails, and one outside the scope gives unmirrored slots.
            self.g_optimizer.build(self.g_vars)
            self.d_optimizer.build(self.d_vars)
            self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
            self.ema_decay = float(ema_decay)
            if not 0.0 <= self.ema_decay < 1.0:
                raise ValueError(f"train.ema_decay={ema_decay}: must be in [0, 1); 0 turns the average off.")
            self.ema_generator = _copy(generator) if self.ema_decay else None
            self.ema_encoder = _copy(encoder) if self.ema_decay and encoder is not None else None
            self.ema_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="ema_updates")
        self.lambdas = (float(lambda_feat), float(lambda_kld))
        self.seed = int(seed)
        replica_g = self._g_replica_step
        replica_d = self._d_replica_step
        if xla:
            replica_g = tf.function(replica_g, jit_compile=True)
            replica_d = tf.function(replica_d, jit_compile=True)
        self._replica_g, self._replica_d = replica_g, replica_d
        self._train_fns = {}
        self._ema_fn = None

    # ------------------------------------------------------------------ pieces

    def semantics(self, batch):
        instances = batch["instance"] if self.use_instance else None
        return make_semantics(batch["label"], self.label_channels, instances)

    def _noise(self, index, salt):
        # Per-example noise from the example's stream position: independent of
        # how the batch is split over replicas, and reproduced on resume.
        dim = self.generator.latent_dim

        def one(p):
            return tf.random.stateless_normal([dim], seed=tf.stack([self.seed * 2 + salt, p]))

        noise = tf.map_fn(one, tf.cast(index, tf.int64), fn_output_signature=tf.float32)
        return tf.cast(noise, self.generator.variable_dtype)

    def _image_noise_seed(self, batch, salt):
        # The generator's noise maps (model.noise_injection), from the batch's first stream position:
        # reproduced on resume. (Per batch, not per example: cheaper, but a different split over
        # replicas draws different maps.)
        if not self.generator.noise_injection:
            return None
        seed = tf.stack([tf.constant(self.seed * 2 + salt, tf.int64), tf.cast(batch["index"][0], tf.int64)])
        return tf.random.experimental.stateless_fold_in(seed, 1)

    def _encode_z(self, batch, real, salt, training=True):
        mu, logvar = self.encoder(real, training=training)
        return mu + self._noise(batch["index"], salt) * tf.exp(0.5 * logvar), mu, logvar

    def _discriminate(self, semantics, fake, real, training=True):
        semantics, real = tf.cast(semantics, fake.dtype), tf.cast(real, fake.dtype)
        pair = tf.concat([tf.concat([semantics, fake], -1), tf.concat([semantics, real], -1)], 0)
        outputs = self.discriminator(pair, training=training)
        fake_out = [[tf.split(t, 2)[0] for t in scale] for scale in outputs]
        real_out = [[tf.split(t, 2)[1] for t in scale] for scale in outputs]
        return fake_out, real_out

    def _batch_weight(self, real):
        dtype = tf.float64 if self.generator.variable_dtype == "float64" else tf.float32
        return tf.cast(tf.shape(real)[0], dtype) / float(self.global_batch)

    def generator_losses(self, batch, training=True):
        """The G step's loss for one replica's batch: (total to differentiate, {term: value}).

        The total is (GAN + feature matching + VGG) * local/global batch + KL (a batch sum).
        `training=False` runs E, G and D in inference mode, as the official fixture's loss
        values were computed; the G step uses `training=True`.
        """
        loss, logs, _ = self._generator_losses(batch, training)
        return loss, logs

    def _generator_losses(self, batch, training=True):
        # generator_losses and the fake it judged (which `reuse_fakes` hands to the D step).
        semantics, real = self.semantics(batch), batch["image"]
        weight = self._batch_weight(real)
        lambda_feat, lambda_kld = self.lambdas
        z, kl = None, None
        if self.encoder is not None:
            z, mu, logvar = self._encode_z(batch, real, salt=0, training=training)
            kl = losses.kl_divergence_loss(mu, logvar, lambda_kld)
        noise_seed = self._image_noise_seed(batch, salt=0)
        fake = self.generator(semantics, z, training=training, one_hot=True, noise_seed=noise_seed)
        fake_out, real_out = self._discriminate(semantics, fake, real, training)
        gan = losses.generator_hinge_loss(fake_out)
        zero = tf.zeros_like(gan)
        kld = zero if kl is None else kl
        feat = losses.feature_matching_loss(fake_out, real_out, lambda_feat) if lambda_feat else zero
        # The official VGGLoss(fake, real): G's [-1, 1] output as it is (the loss object knows its
        # weights' input convention).
        vgg = tf.cast(self.vgg_loss(fake, real), gan.dtype) if self.vgg_loss is not None else zero
        loss = (gan + feat + vgg) * weight + kld
        return loss, {"G_GAN": gan, "G_Feat": feat, "G_VGG": vgg, "G_KLD": kld}, fake

    def discriminator_losses(self, batch, training=True, fake=None):
        """The D step's loss for one replica's batch: (total to differentiate, {term: value}).

        As the official D step: a fresh z, and G (and E) in train mode when `training`, so their
        batch statistics and power iterations advance again; the fake carries no gradient.
        A given `fake` (`reuse_fakes`: the G step's) is judged instead, and E and G do not run.
        """
        semantics, real = self.semantics(batch), batch["image"]
        weight = self._batch_weight(real)
        if fake is None:
            z = None
            if self.encoder is not None:
                z, _, _ = self._encode_z(batch, real, salt=1, training=training)
            noise_seed = self._image_noise_seed(batch, salt=1)
            fake = self.generator(semantics, z, training=training, one_hot=True, noise_seed=noise_seed)
        fake = tf.stop_gradient(fake)
        fake_out, real_out = self._discriminate(semantics, fake, real, training)
        d_fake, d_real = losses.discriminator_hinge_loss(fake_out, real_out)
        return (d_fake + d_real) * weight, {"D_Fake": d_fake, "D_real": d_real}

    def _g_replica_step(self, batch):
        with tf.GradientTape() as tape:
            loss, logs, fake = self._generator_losses(batch)
            scaled = self.g_optimizer.scale_loss(loss) if hasattr(self.g_optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.g_vars)
        self.g_optimizer.apply_gradients(zip(grads, self.g_vars))
        if self.reuse_fakes:
            # Handed to the D step (a per-replica value between the two tf.functions).
            return logs, fake
        return logs

    def _d_replica_step(self, batch, fake=None):
        with tf.GradientTape() as tape:
            loss, logs = self.discriminator_losses(batch, fake=fake)
            scaled = self.d_optimizer.scale_loss(loss) if hasattr(self.d_optimizer, "scale_loss") else loss
        grads = tape.gradient(scaled, self.d_vars)
        self.d_optimizer.apply_gradients(zip(grads, self.d_vars))
        return logs

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
        # With `reuse_fakes` the G step also returns its per-replica fakes, and "D_given" takes them.
        if name not in self._train_fns:
            replica_fn = self._replica_g if name == "G" else self._replica_d

            @tf.function
            def step(dist_batch, *fakes):
                out = self.strategy.run(replica_fn, args=(dist_batch, *fakes))
                if isinstance(out, tuple):  # the G step's (logs, fakes)
                    return self._reduce(out[0]), out[1]
                return self._reduce(out)

            self._train_fns[name] = step
        return self._train_fns[name]

    def train_step(self, dist_batch):
        """One iteration (G step when due, then D step); returns the reduced losses as floats."""
        logs = {}
        g_step = int(self.step.numpy()) % self.d_steps_per_g == 0
        fakes = None
        if g_step:
            g_logs = self._distributed("G")(dist_batch)
            if self.reuse_fakes:
                g_logs, fakes = g_logs
            logs.update(g_logs)
        if fakes is None:
            logs.update(self._distributed("D")(dist_batch))
        else:
            logs.update(self._distributed("D_given")(dist_batch, fakes))
        if g_step and self.ema_generator is not None:
            # After the D step, which also advances G's and E's batch statistics and power iterations.
            self._update_average()
        self.step.assign_add(1)
        return StepLogs({k: float(v) for k, v in logs.items()})

    def _update_average(self):
        if self._ema_fn is None:
            pairs = list(zip(self.ema_generator.weights, self.generator.weights))
            if self.ema_encoder is not None:
                pairs += list(zip(self.ema_encoder.weights, self.encoder.weights))

            @tf.function
            def update():
                n = tf.cast(self.ema_updates, tf.float64)
                decay = tf.minimum(tf.constant(self.ema_decay, tf.float64), (1.0 + n) / (10.0 + n))
                for average, weight in pairs:
                    if is_power_iteration_vector(weight):
                        # Copied, not averaged: an average of unit vectors is shorter than 1, so the
                        # inference sigma = u . (W v) would come out too small and the kernel W / sigma
                        # too large (measured: speckled, over-contrasted images with ema_decay 0.99).
                        average.assign(weight)
                        continue
                    d = tf.cast(decay, average.dtype)
                    average.assign(average * d + tf.cast(weight, average.dtype) * (1 - d))
                self.ema_updates.assign_add(1)

            self._ema_fn = update
        self._ema_fn()

    @property
    def synthesis_networks(self):
        """(G, E or None) that synthesis, evaluation and the bundle use: the averages when kept."""
        if self.ema_generator is not None:
            return self.ema_generator, self.ema_encoder
        return self.generator, self.encoder

    def synthesize(self, batch, seed=0):
        """Eval-mode images for a (non-distributed) batch; with a VAE, z from E on the real image.
        Uses `synthesis_networks` (the moving averages when kept)."""
        semantics = self.semantics(batch)
        generator, encoder = self.synthesis_networks
        z = None
        if encoder is not None:
            mu, logvar = encoder(batch["image"], training=False)
            eps = tf.random.stateless_normal(tf.shape(mu), seed=[seed, 0], dtype=mu.dtype)
            z = mu + eps * tf.exp(0.5 * logvar)
        return generator(semantics, z, training=False, one_hot=True)

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
        if self.ema_generator is not None:
            items["ema_generator"] = by_path(self.ema_generator)
            items["ema_updates"] = self.ema_updates
        if self.ema_encoder is not None:
            items["ema_encoder"] = by_path(self.ema_encoder)
        return tf.train.Checkpoint(**items)

    def state_nbytes(self):
        """Bytes of the training state (networks and optimisers): about the size of one checkpoint."""
        models = (self.generator, self.discriminator, self.encoder, self.ema_generator, self.ema_encoder)
        models = [m for m in models if m is not None]
        variables = [v for m in models for v in m.weights]
        variables += list(self.g_optimizer.variables) + list(self.d_optimizer.variables)
        return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)

    def load_pretrained(self, bundle_path):
        """Fine-tuning: copies weights from a converted official bundle (same architecture)."""
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
        # The averages start from the loaded weights, not from the random initialisation.
        for average, model in ((self.ema_generator, self.generator), (self.ema_encoder, self.encoder)):
            if average is not None:
                average.set_weights(model.get_weights())
        return loaded


def clean_worker_dir(path):
    if path and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
