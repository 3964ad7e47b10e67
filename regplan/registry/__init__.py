"""The running registry, through its HTTP API."""
