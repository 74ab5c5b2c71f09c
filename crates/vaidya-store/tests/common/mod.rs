pub mod pg;
pub mod engines;
