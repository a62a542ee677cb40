"""Nudge's shared package: the event contract, pure decision logic and the AWS adapters.

Deployed to Lambda as the SharedLayer (importable as ``shared``); the functions under
``functions/`` are thin adapters over what lives here.
"""
