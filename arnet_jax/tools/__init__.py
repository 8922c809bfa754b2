"""Command-line tools: `python -m arnet_jax.tools.<name>` (e.g. `report`)."""
