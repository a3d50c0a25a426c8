"""Client training data: sources, the harmful-ratio mixture, and partitioning over clients."""
