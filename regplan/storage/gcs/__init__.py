"""Google Cloud Storage: where a registry is (place.py), and the Bucket seam on the
Google Cloud client (gcsbucket.py)."""
