"""Stage evaluate: a trained cell scored per skill metric through lm-evaluation-harness
(the adapter in harness.py, the task files in tasks/), in bits per byte; hf.py scores any
Hugging Face model on the same tasks."""
