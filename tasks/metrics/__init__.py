"""Evaluation metrics: span-level scores identical to conlleval.pl, and seqeval's strict mode."""
