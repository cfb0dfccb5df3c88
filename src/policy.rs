//! TODO(policy)
