"""The pool's data-plane wire: the raw-tensors body, the data-plane client, and TLS."""
