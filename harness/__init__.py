"""fedllm-harness: a plugin-based benchmark harness for responsible federated LLM fine-tuning."""

__version__ = "0.1.0"
