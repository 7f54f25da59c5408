"""Data: tokenizers, corpus files -> cached token arrays, training batches."""
