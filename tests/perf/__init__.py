"""Performance helpers: FLOP counting for LoRA training, the machine's matmul peak, profile grouping."""
