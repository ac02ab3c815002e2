"""Dataset readers: CoNLL, TSV, SST trees, the Raganato WSD framework."""
