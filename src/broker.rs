//! TODO(broker)
