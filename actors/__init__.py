"""The only layer with threads and sockets: I/O loop, actor runtime, connection actors."""
