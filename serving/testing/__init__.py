"""Test harness: the same tests against the embedded server, a TF Serving container or an external one."""
