//! S3-compatible object storage with Object Lock (see `S3Target`).
