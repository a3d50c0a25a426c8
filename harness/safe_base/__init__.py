"""Safe bases: safety-tuning a model with the harness's own LoRA loop, and the shipped result."""
