//! Actions on infrastructure: each idempotent, each able to check the world before acting.
