"""Experiments built on the tasks: the layer-weighting grid and the nearest-centroid WSD method."""
