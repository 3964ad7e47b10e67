"""Sample registries and the guided tour (``regplan demo``)."""
