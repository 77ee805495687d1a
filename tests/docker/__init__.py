"""Tests of docker/: the image definition, its entrypoint and its containers."""
