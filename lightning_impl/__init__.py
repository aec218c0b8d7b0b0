"""lightning_impl."""
