"""Rollouts: canary, promote, rollback, retire through models.config and the reload RPC, with gates."""
