"""The storage seam: opening a storage (location) and its backends, one package each."""
