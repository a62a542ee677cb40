"""The demo: MovieLens-100k replayed through the whole pipeline on the local runner."""
