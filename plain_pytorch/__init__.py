"""plain_pytorch."""
