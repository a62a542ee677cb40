"""Tests of the local runner (runner/)."""
