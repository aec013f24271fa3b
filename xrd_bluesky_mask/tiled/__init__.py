"""Tiled side: reading frames (`frames`), writing and finding results (`sink`, `results`), and
the embedded server (`server`)."""
