"""AR-Net (adaptive frame resolution for efficient action recognition) in JAX/Flax."""
