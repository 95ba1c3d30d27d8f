"""Models: loading by name, GGUF file, directory or hub id, and their limits read before loading."""
