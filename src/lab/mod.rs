//! The local SSM-compatible lab.
