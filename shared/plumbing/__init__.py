"""Lambda plumbing: settings, the composition root, stream batch processing, logging and metrics."""
