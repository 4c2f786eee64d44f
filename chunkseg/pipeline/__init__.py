"""One module per command: open stores, call engine + ops, write outputs."""
