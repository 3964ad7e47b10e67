"""A registry on a filesystem: its walk and its transaction store."""
