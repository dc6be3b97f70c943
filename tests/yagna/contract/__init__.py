"""Contract tests: the yagna client against the daemon's OpenAPI specs (patched where the real
daemon differs, see ``openapi_support``)."""
