"""Management commands of aspects-sink."""
