//! A local directory as a backup target.
