"""Read: the path scheme, the walk's events, the inventory and the tree's digest.

The same for every storage: a backend's walk (storage/) yields the events of tokens.py.
"""
