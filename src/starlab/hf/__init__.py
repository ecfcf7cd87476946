"""Hugging Face ``transformers`` export of starlab models (an optional extra: ``pip install starlab[hf]``)."""
