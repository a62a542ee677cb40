"""Nudge's scenario kit: one driver for the local stack, one traffic kit, one feedback simulator,
the storage audits, the fakes and the tiny model. Used by demo/, reliability/, bench/ and tests/;
nothing here ships in a Lambda layer."""
