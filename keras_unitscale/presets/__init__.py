"""keras_unitscale.presets."""
