//! Helpers for Vigil's integration tests.
