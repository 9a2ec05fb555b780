"""keras_unitscale.models."""
