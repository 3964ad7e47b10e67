"""Object stores (S3, Azure Blob, GCS): the Bucket seam (bucket.py) and the scan,
apply, rollback, purge, history and lock written once over it."""
