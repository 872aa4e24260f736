"""cloud_hub package."""
