"""keras_unitscale.layers."""
