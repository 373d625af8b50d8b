//! Browser bindings over warden-core.
