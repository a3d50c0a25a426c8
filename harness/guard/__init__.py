"""Safety filters around the ``pre_local_train`` hook: Llama Guard 3 prompts and scoring, guard
fine-tuning, a light embedding filter, labelled sets and Table-2 detection metrics."""
