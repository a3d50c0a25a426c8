"""Built-in aggregators plugins."""
