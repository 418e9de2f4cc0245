"""The shared 'small' variant: the same dataset at 64 px with narrow networks, for a quick run on real data."""


def shrink(c):
    c.data.load_size = 72
    c.data.crop_size = 64
    if c.data.preprocess_mode == "fixed":
        c.data.load_size = 64
    c.model.base_filters = 16
    c.model.spade.hidden_filters = 32
    c.discriminator.base_filters = 16
    c.encoder.image_size = 64
    c.train.batch_size = 4
    c.train.max_steps = 200
    c.train.log_every = 10
    c.train.image_every = 50
    c.train.checkpoint_every = 100
    return c
