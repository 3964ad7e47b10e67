"""A registry in an S3 bucket: its requests, its walk and its transaction store."""
