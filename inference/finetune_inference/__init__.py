"""The serving side: the reference inference engine and the adapter agent sidecar."""
