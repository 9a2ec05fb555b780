"""keras_unitscale.export."""
