"""The harmful-reply scenario (docs/data.md): client data whose red rows are an untuned model's compliant answers
to harmful requests, and whose acceptable rows are its answers to benign questions and a safe model's refusals.

``pool`` reads the prompts, ``labels`` judges a reply, ``reference`` holds every set the prompts must stay clear
of, ``build`` answers, labels and writes (``harness data harmful-scenario``).
"""
