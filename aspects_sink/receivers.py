"""Signal receivers: thin adapters from platform signals to the outbox (filled in by the live-path work)."""


def connect_model_receivers():
    """Connect post_save receivers for the configured models."""
