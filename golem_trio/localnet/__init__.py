"""Local, fully offline Golem networks for tests and demos."""
