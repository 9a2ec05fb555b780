"""keras_unitscale.analysis."""
