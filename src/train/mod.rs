//! Training: manifests (more to come from the trainer).

pub mod manifest;
