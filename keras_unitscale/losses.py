"""Unit-scaled losses."""
