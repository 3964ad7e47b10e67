"""Azure Blob Storage: where a registry is (place.py), and the Bucket seam on the
Azure SDK (container.py)."""
