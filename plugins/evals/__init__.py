"""Built-in evals plugins."""
