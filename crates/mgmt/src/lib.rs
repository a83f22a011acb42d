//! Management (see docs/ARCHITECTURE.md, "Management").
