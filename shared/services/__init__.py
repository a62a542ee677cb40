"""One service per function, written against the ports in shared.domain.ports (fakes in testkit/)."""
