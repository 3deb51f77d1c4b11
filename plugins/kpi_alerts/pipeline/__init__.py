"""One alert, one slot: claim, fetch, check, render, send, record — plain Python, given its inputs."""
