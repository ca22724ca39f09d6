"""A user's own project: a map-style Dataset and a network, nothing that knows about selectkit."""
