"""Nudge's shared package, deployed to Lambda as the SharedLayer (importable as ``shared``).

- ``domain``: the event contract, user state and its fold, admission, the push policy, caps and the
  ports (Protocols) the services need; pure Python, no AWS, no model runtime.
- ``services``: one per function (ingest, features, decide, feedback, erasure), written against the ports.
- ``adapters``: DynamoDB, S3, SNS, SSM and the ONNX model behind those ports.
- ``plumbing``: what Lambda needs: settings, the composition root, stream batch processing, logging.

The functions under ``functions/`` are thin adapters over ``plumbing`` and ``services``.
"""
