"""visit-assets: image metadata to visual instruction tuning data, as versioned Dagster assets."""

__version__ = "0.1.0"
