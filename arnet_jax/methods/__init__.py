"""The library's methods, each a set of `arnet_jax.registry` entries (imported on first use)."""
