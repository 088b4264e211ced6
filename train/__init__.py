"""Training, evaluation and export of fer-overlay's emotion CNN (``python -m train``)."""
