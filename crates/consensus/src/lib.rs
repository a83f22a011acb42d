//! Replicated pool state (see docs/ARCHITECTURE.md, "Management").
