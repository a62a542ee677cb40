"""Offline training for Nudge's recommender: data loading, model building, ONNX export, evaluation.

Runs on a developer machine or CI, never inside Lambda. The only thing that crosses into the
runtime is the exported artifact (``model.onnx`` + ``manifest.json``) read by ``shared.model``.
"""
