"""Built-in alignment plugins."""
