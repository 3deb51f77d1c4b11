"""Cube.js: the REST format (queries and results, no HTTP) and the plain-Python HTTP client."""
