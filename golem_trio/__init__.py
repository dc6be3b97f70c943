"""golem-trio: a requestor SDK for the Golem network, built on Trio structured concurrency."""

__version__ = "0.1.0"
