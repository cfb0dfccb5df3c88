//! TODO(mfa)
