//! Shared helpers for the peergraph examples.
